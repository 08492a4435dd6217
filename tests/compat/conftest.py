"""The programs are scripts run in their own interpreters, never imported by pytest."""

collect_ignore = ["programs"]
