"""The web app: admin API, public transparency portal and block pages (see ``app``)."""
