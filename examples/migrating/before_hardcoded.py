import os

import requests

TOKEN = os.environ["API_TOKEN"]  # pasted from a login, or set by a wrapper script

session = requests.Session()
session.headers["Authorization"] = f"Bearer {TOKEN}"
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
