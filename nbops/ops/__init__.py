"""Operations: registry promotion and rollback behind gates, drift, lineage, audit, verify."""
