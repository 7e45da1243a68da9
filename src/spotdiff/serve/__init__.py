"""Export trained digit models to deployable formats (`spotdiff export`) and serve them (`spotdiff serve`)."""
