"""The shared core: settings, errors, auth, the runtime, validation and the scorer."""
