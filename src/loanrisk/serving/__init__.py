"""The scoring service: app factory, routes, schemas, security, model holder, prediction log."""
