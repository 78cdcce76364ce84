"""Byte strategies shared by the fuzz tests: mutations of a valid file, or any bytes."""

from __future__ import annotations

from hypothesis import strategies as st


def mutated(seed: bytes, max_ops: int = 4):
    """Bytes of ``seed`` with up to ``max_ops`` inserts, deletes, overwrites or a truncation."""
    op = st.tuples(st.sampled_from(["insert", "delete", "replace", "truncate"]),
                   st.integers(0, len(seed)), st.binary(min_size=1, max_size=16))

    def apply(ops):
        data = bytearray(seed)
        for kind, pos, chunk in ops:
            pos = min(pos, len(data))
            if kind == "insert":
                data[pos:pos] = chunk
            elif kind == "delete":
                del data[pos:pos + len(chunk)]
            elif kind == "replace":
                data[pos:pos + len(chunk)] = chunk
            else:
                del data[pos:]
        return bytes(data)

    return st.lists(op, min_size=1, max_size=max_ops).map(apply)


def any_bytes(seed: bytes):
    return st.one_of(mutated(seed), st.binary(max_size=256))
