"""The database: engine and sessions, the migrations and where the schema stands."""
