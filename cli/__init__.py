"""The command line around run.py: the app's options, the admin commands, and the data folder both open."""
