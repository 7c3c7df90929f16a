from refreshing_session import RefreshingSession

session = RefreshingSession.from_profile("local")
print(session.get(session.prefixes.urls[0] + "items", timeout=10).json())
