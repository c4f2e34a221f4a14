"""The job model: entities (models), their legal moves (state_machine) and their storage (repository)."""
