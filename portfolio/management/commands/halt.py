"""halt: stop new entries for a pool (exits still flow)."""

from portfolio.management.halting import SetHaltCommand


class Command(SetHaltCommand):
    help = (
        "Halt a pool: the next cycle skips every entry with pool_halted. Exits, the risk "
        "threshold monitor and the loops keep running. A halted pool keeps its first reason. "
        "Recorded in operator_actions."
    )
    halted = True
