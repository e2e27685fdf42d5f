"""The decision engine: policies, signals, judges, decisions, cases and their webhooks."""
