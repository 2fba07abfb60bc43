"""Releases: ``make package`` builds one into ``dist/`` (``package``); ``make deploy`` puts it on AWS (``deploy``)."""
