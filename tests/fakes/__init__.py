"""Local fakes of external services (HTTP servers on 127.0.0.1) driven by the real SDK clients in tests."""
