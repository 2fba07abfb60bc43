"""Releases: ``make package`` builds one into ``dist/`` (``package``); ``make deploy`` uploads it (``deploy``)."""
