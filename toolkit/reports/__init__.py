"""Reports over result rows: terminal tables, JSON, CSV, Markdown. Nothing is measured here."""
