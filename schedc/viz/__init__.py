"""Pictures of schedules: timelines (SVG, PNG, HTML), traces, dependency graphs."""
