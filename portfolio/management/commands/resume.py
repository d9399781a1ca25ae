"""resume: let a halted pool enter commitments again."""

from portfolio.management.halting import SetHaltCommand


class Command(SetHaltCommand):
    help = (
        "Resume a halted pool: entries are evaluated again from the next cycle. The reason and "
        "the halt it lifts are recorded in operator_actions."
    )
    halted = False
