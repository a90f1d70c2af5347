"""Notification channels (e-mail, SMS, in-app), templates, rules and outbound webhooks."""
