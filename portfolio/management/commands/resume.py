"""resume: let a halted pool enter commitments again."""

from portfolio.management.halting import SetHaltCommand


class Command(SetHaltCommand):
    help = "Resume a halted pool: entries are evaluated again from the next cycle."
    halted = False
    reason_required = False
