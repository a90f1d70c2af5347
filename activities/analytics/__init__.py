"""Fleet analytics activities: KPIs with pandas over the projection and the history store."""
