"""Alert delivery beyond the rules: the dashboard's alert history (store, webhook payloads) and Alertmanager's API."""
