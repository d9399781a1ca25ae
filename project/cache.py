"""Cache key function that leaves keys as written.

Keys such as ``app:execution:circuit_breaker:daily_loss`` are read by external monitors
straight from Redis, so they carry no Django prefix or version.
"""


def plain_key(key: str, key_prefix: str, version: int) -> str:
    return key
