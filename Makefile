# Two commands matter: `make demo` and `make test`. Both set up the virtualenv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
# The demo always runs on the embedded default: a SQLite file, the ORM broker, the paper broker.
DEMO_ENV := env -u DATABASE_URL -u REDIS_URL

.PHONY: setup demo test lint format serve worker bench clean

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

setup: $(STAMP)

demo: setup
	@rm -f var/engine.sqlite3 var/engine.sqlite3-wal var/engine.sqlite3-shm
	@$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput -v0
	@$(DEMO_ENV) $(BIN)/python manage.py createcachetable
	@$(DEMO_ENV) $(BIN)/python manage.py demo

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run -v0

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

serve: setup
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py createcachetable
	$(BIN)/python manage.py runserver 127.0.0.1:8000

worker: setup
	$(BIN)/python manage.py qcluster

bench: setup
	$(BIN)/python manage.py bench decision_cycle --recommendations 5000 --entities 500 --commitments 200

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
