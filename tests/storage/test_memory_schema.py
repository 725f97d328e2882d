"""The memory twin describes the same tables as the schema, so a new column or constraint
cannot be added to one and forgotten in the other."""

from __future__ import annotations

import pytest
from sqlalchemy import Float, Table, UniqueConstraint

from faramesh.storage import memory, schema


def _table(name: str) -> Table:
    return schema.metadata.tables[name]


@pytest.mark.parametrize("name", sorted(memory.TABLES))
def test_memory_table_matches_the_schema(name: str) -> None:
    spec, table = memory.TABLES[name], _table(name)
    assert spec.fields == tuple(table.columns.keys())
    (key,) = table.primary_key.columns
    assert spec.key == key.name
    assert spec.autoincrement == (table.autoincrement_column is not None)
    assert spec.not_null == {c.name for c in table.columns if not c.nullable}
    assert dict(spec.defaults) == {c.name: c.default.arg for c in table.columns if c.default is not None}
    assert spec.floats == {c.name for c in table.columns if isinstance(c.type, Float)}
    unique = {(c.name,) for c in table.columns if c.unique} | {
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    }
    assert set(spec.unique) == unique


def test_memory_audit_chain_starts_where_the_schema_does() -> None:
    assert memory.GENESIS_HASH == schema.GENESIS_HASH
