# Two commands matter: `make demo` and `make test`. Both set up the virtualenv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
# The demo always runs on the embedded default: a SQLite file, the ORM broker, the paper broker.
DEMO_ENV := env -u DATABASE_URL -u REDIS_URL
# The Procfile's commands find python, gunicorn and honcho in the virtualenv; web listens on PORT.
SERVE_ENV = PATH="$(CURDIR)/$(BIN):$$PATH" PORT="$${PORT:-8000}" \
	SECRET_KEY="$${SECRET_KEY:-$$(cat var/secret-key)}"

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

# Everything a desk runs, in the foreground until Ctrl-C: the Procfile's release step, then its
# web server and django-q2 cluster. Without SECRET_KEY, a random key kept in var/secret-key.
serve: setup var/secret-key
	@$(SERVE_ENV) $(BIN)/honcho start release
	@$(SERVE_ENV) exec $(BIN)/honcho start web worker

var/secret-key:
	@mkdir -p var
	@umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(64))" > $@

# One more django-q2 cluster (the Procfile's worker), e.g. on a second machine.
worker: setup var/secret-key
	@$(SERVE_ENV) exec $(BIN)/honcho start worker

bench: setup
	$(BIN)/python manage.py bench decision_cycle --recommendations 5000 --entities 500 --commitments 200

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
