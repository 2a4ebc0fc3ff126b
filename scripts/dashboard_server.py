"""Serve the dashboard under waitress (a production WSGI server); the supervisor runs this."""


from llmops.dashboard import main

if __name__ == "__main__":
    main()
