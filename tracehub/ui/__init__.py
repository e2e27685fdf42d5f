"""The server-rendered web UI (`tracehub.ui.app.Ui`), mounted on the main port's app."""
