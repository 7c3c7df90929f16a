from refreshing_session import OAuth2Refresher, RefreshingSession
from refreshing_session.redis_store import RedisTokenStore

session = RefreshingSession(
    "https://api.example.com/",
    store=RedisTokenStore(
        "redis://my-app:s3cret@redis.internal:6379/0",  # or a redis.Redis client
        "refreshing-session:api.example.com",  # one key per grant
        lock_ttl=60.0,  # longer than the refresher's worst-case time
        check_interval=1.0,  # look at Redis at most once a second
    ),
    refresher=OAuth2Refresher(
        "https://auth.example.com/oauth/token", client_id="my-client", client_secret="s3cret"
    ),
)
print(session.get("https://api.example.com/v1/items", timeout=10).status_code)
