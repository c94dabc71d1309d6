-- orch.version: one place for the version string.
return { version = "0.1.0" }
