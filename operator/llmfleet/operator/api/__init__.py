"""The custom resources' pydantic models: the single source of the CRD schemas."""
