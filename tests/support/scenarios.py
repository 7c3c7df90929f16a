"""The rows of the reliability report's table (docs/reports/reliability.md): each fault, bad
input or attack, what must hold, and the tests that try it. conftest.py marks those tests;
``python -m tests.support.reliability`` runs them and writes the table."""

from __future__ import annotations

from typing import NamedTuple


class Scenario(NamedTuple):
    holds: str
    tests: tuple[str, ...]


SCENARIOS: dict[str, Scenario] = {
    "Process killed (SIGKILL) while it holds the lock, mid-refresh": Scenario(
        "the others take the lock at once and refresh; no stale lock; file intact",
        ("test_a_process_killed_while_refreshing_leaves_no_stale_lock",),
    ),
    "Reader polling the file during hundreds of writes; writer SIGKILLed": Scenario(
        "never invalid JSON, an empty file, or a token older than one already seen",
        ("test_readers_never_see_a_partial_or_older_token",),
    ),
    "Hung token endpoint": Scenario(
        "the refresh gives up after its timeout (RefreshFailed); waiters get LockTimeout "
        "within lock_timeout",
        (
            "test_a_hung_token_endpoint_times_out_and_waiters_time_out_sooner",
            "test_hung_endpoint_times_out",
        ),
    ),
    "Token endpoint: 500, 502, 503, 429, HTML page, bad JSON, no access_token, non-bearer, "
    "connection reset": Scenario(
        "RefreshFailed with the status and a short redacted excerpt; file byte-identical; "
        "transient ones retried with bounded backoff; a valid token keeps serving",
        (
            "test_a_misbehaving_token_endpoint_leaves_the_file_byte_identical",
            "test_a_connection_reset_leaves_the_file_byte_identical",
            "test_a_single_transient_failure_is_invisible_to_the_caller",
            "test_a_failed_early_refresh_keeps_using_the_valid_token",
            "test_transient_failure_is_retried",
            "test_persistent_503_fails_after_every_retry",
            "test_long_retry_after_is_not_waited_for",
            "test_non_ascii_digit_retry_after_is_ignored",
            "test_html_error_page_is_summarised",
            "test_unusable_200_answer_fails_without_retry",
            "test_a_refresh_that_may_have_reached_the_server_is_not_sent_again",
        ),
    ),
    "401 that a refresh cannot fix, flooded from 16 threads and 4 processes": Scenario(
        "one refresh and one replay, then the 401 goes back; no loop, no flood of refreshes",
        (
            "test_a_flood_of_unfixable_401s_costs_one_refresh",
            "test_a_401_that_refresh_cannot_fix_costs_one_refresh_per_token",
            "test_insufficient_scope_does_not_trigger_a_refresh",
        ),
    ),
    "Refresh token refused (invalid_grant) while siblings are busy": Scenario(
        "the others raise LoginRequired without calling the endpoint; a token written "
        "meanwhile is adopted, never overwritten or blanked",
        (
            "test_a_refused_refresh_token_stops_every_process_without_more_calls",
            "test_a_refused_refresh_token_is_recorded_for_every_sibling",
            "test_a_login_landing_during_a_refused_refresh_is_adopted",
            "test_a_401_after_a_siblings_refresh_adopts_its_token_without_a_call",
        ),
    ),
    "New login written by hand or another tool while workers run": Scenario(
        "picked up by the next request",
        (
            "test_a_token_written_by_another_tool_is_picked_up_at_once",
            "test_a_new_login_clears_the_refusal",
        ),
    ),
    "fork after use, spawn, forkserver, pickling into a process pool": Scenario(
        "keeps working and keeps sharing the file (one refresh in total)",
        (
            "test_sessions_keep_sharing_the_file_in_child_processes",
            "test_pickled_and_copied_sessions_keep_working",
            "test_a_pickled_session_carries_no_lock_or_cached_token",
        ),
    ),
    "Expiry bookkeeping: only expires_in, no expiry, JWT exp, lifetime under the leeway": Scenario(
        "a reloaded token never looks fresh; no refresh on every request; 401-only when unknown",
        (
            "test_a_file_with_only_expires_in_counts_from_its_modification_time",
            "test_a_token_without_expiry_is_refreshed_on_401_only",
            "test_a_lifetime_shorter_than_the_leeway_is_not_refreshed_on_every_request",
            "test_a_token_within_the_leeway_is_refreshed_early_but_not_before_half_its_life",
            "test_without_expiry_fields_the_jwt_exp_claim_is_the_expiry",
            "test_file_with_only_expires_in_counts_from_when_it_was_written",
        ),
    ),
    "Bad token file: missing, empty, truncated, not JSON, not an object, wrong types, huge, "
    "symlink, directory, FIFO, unreadable, readable by others": Scenario(
        "TokenFileError or LoginRequired naming the path; the file is never rewritten; "
        "a loose mode is warned about and tightened at the next write",
        (
            "test_a_bad_file_raises_an_error_naming_it_and_is_left_as_is",
            "test_a_pathological_json_file_raises_token_file_error",
            "test_a_directory_at_the_path_raises_an_error_naming_it",
            "test_a_fifo_at_the_path_raises_an_error_without_hanging",
            "test_an_unreadable_file_raises_an_error_naming_it_and_is_left_as_is",
            "test_a_file_others_can_read_loads_with_a_warning_and_is_made_private_on_write",
            "test_read_through_a_symlink_reads_the_target",
            "test_write_through_a_symlink_replaces_the_target_and_keeps_the_link",
            "test_a_corrupt_token_file_raises_and_stays_untouched",
            "test_construction_reads_nothing_and_a_missing_file_asks_for_a_login",
        ),
    ),
    "Unusable lock file": Scenario(
        "a clear TokenFileError naming the lock file, not a hang",
        ("test_an_unusable_lock_file_gives_a_clear_error",),
    ),
    "Constructor misuse": Scenario(
        "ValueError or TypeError saying how to fix it",
        (
            "test_misuse_is_refused_with_a_hint",
            "test_bad_prefixes_are_refused_with_an_example",
            "test_invalid_configuration_is_refused",
        ),
    ),
    "Property-based: arbitrary token files and token responses (hypothesis)": Scenario(
        "a token or a typed error, never another exception",
        (
            "test_any_bytes_give_a_snapshot_or_a_token_file_error",
            "test_any_json_like_dict_gives_a_token_or_value_error",
        ),
    ),
    "Token aimed at another origin: redirects, https to http, look-alike hosts, userinfo": Scenario(
        "the token never leaves the prefixes",
        (
            "test_prefixes_match_on_origin_and_path_boundary",
            "test_a_redirect_to_another_origin_carries_no_token",
            "test_a_redirect_leaving_the_prefix_on_the_same_origin_carries_no_token",
            "test_urls_outside_the_prefix_get_no_token",
        ),
    ),
    "Secrets in logs, reprs, exception messages, status output": Scenario(
        "none, even when the token endpoint echoes them (every test also scans its DEBUG logs)",
        (
            "test_no_secret_leaks_through_a_whole_session_lifetime",
            "test_echoed_secrets_are_redacted",
            "test_escaped_secret_echo_is_redacted",
            "test_repr_shows_no_secret",
            "test_status_describes_the_token_without_secrets",
            "test_rendering_a_token_never_shows_its_secrets",
        ),
    ),
    "Token and lock files under any umask": Scenario(
        "created 0600 from the start; the lock file holds no secret",
        (
            "test_write_creates_a_private_file_whatever_the_umask",
            "test_the_token_file_is_private",
            "test_the_lock_file_holds_no_secret",
        ),
    ),
    "Storm: 8 processes x 4 threads, 1-second tokens": Scenario(
        "no caller error, token-endpoint calls within the tokens that came due, no reuse",
        ("test_a_storm_of_8_processes_by_4_threads_refreshes_once_per_expiry",),
    ),
    (
        "Soak: 16 processes x 4 threads, 1-second tokens, random slow endpoint, 503s, SIGKILLs"
    ): Scenario(
        "no caller error, no reuse detection, calls within the expiries plus injected retries, "
        "the file valid at the end",
        ("test_a_storm_with_random_faults_loses_nothing_and_leaks_no_reuse",),
    ),
    "Redis store: processes sharing only Redis, 1-second tokens": Scenario(
        "no caller error, token-endpoint calls within the tokens that came due, no reuse; "
        "fork, spawn and pickling keep sharing",
        (
            "test_processes_sharing_only_redis_refresh_once_per_due_token",
            "test_sessions_keep_sharing_redis_in_child_processes",
        ),
    ),
    "Redis store: lock holder SIGKILLed mid-refresh, or stalled past its lock": Scenario(
        "the others proceed once lock_ttl passes; a stalled holder's write is refused (fencing) "
        "and the newer token stays; a late release never frees the next holder's lock",
        (
            "test_a_holder_killed_mid_refresh_blocks_the_others_only_until_lock_ttl",
            "test_a_holder_whose_lock_expired_cannot_overwrite_the_newer_token",
            "test_a_late_release_never_frees_the_next_holders_lock",
            "test_an_abandoned_lock_expires_after_lock_ttl",
        ),
    ),
    "Redis store: Redis restarted, unreachable, or lost mid-refresh": Scenario(
        "callers succeed or get a TokenStoreError soon; a persisted token survives; a token "
        "refreshed meanwhile is used and stored once Redis is back",
        (
            "test_requests_go_on_while_redis_restarts_and_the_token_survives",
            "test_an_unreachable_redis_is_a_clear_error_soon",
            "test_a_token_refreshed_while_redis_went_down_is_used_and_stored_later",
        ),
    ),
    "Redis store: an ACL user, wrong credentials, bad stored data": Scenario(
        "works with the right password; a clear TokenStoreError otherwise, never showing the "
        "password",
        (
            "test_an_acl_user_works_and_wrong_credentials_are_a_clear_error",
            "test_bad_stored_data_is_a_token_store_error",
            "test_a_session_on_bad_stored_data_raises_a_token_store_error",
        ),
    ),
    "Device login: pending, slow_down, denied, expired code; bad profile files": Scenario(
        "the client waits as the server asks (5 s more after each slow_down), stops at denial "
        "or expiry with a clear error; profile errors name the file, profile and key",
        (
            "test_device_login_shows_the_code_and_returns_the_token_once_approved",
            "test_slow_down_adds_five_seconds_to_every_later_wait",
            "test_a_denied_login_says_so",
            "test_an_expired_code_says_to_log_in_again",
            "test_the_client_gives_up_at_the_codes_expiry_on_its_own_clock",
            "test_bad_keys_are_named_with_what_is_expected",
            "test_a_malformed_file_says_what_is_wrong",
            "test_a_missing_profile_lists_the_ones_there",
        ),
    ),
    # Issue 12, items 1, 7, 8, 9: the token stays on its prefixes (tests/test_attack_prefixes.py).
    (
        "Dot segments in caller URLs and redirect Locations: ../, %2e%2e, %2E%2E, .%2e, %2e., ..%2F"
    ): Scenario(
        "no token to a path a normalising server routes outside the prefix, on any hop; what "
        "stays inside keeps it",
        (
            "test_a_caller_url_climbing_out_of_the_prefix_gets_no_token",
            "test_a_redirect_climbing_out_of_the_prefix_gets_no_token",
            "test_encoded_slashes_and_dot_segments_inside_the_prefix_keep_their_answer",
            "test_prefixes_match_after_dot_segment_removal",
        ),
    ),
    "Plain http prefix on a remote host, in code or in a profile": Scenario(
        "refused (ValueError; ProfileError naming the key) unless allow_insecure_http is set; "
        "http on the loopback interface works",
        (
            "test_a_plain_http_prefix_on_a_remote_host_is_refused",
            "test_a_plain_http_prefix_on_the_loopback_interface_is_allowed",
            "test_a_profile_with_a_plain_http_prefix_is_refused_unless_allowed",
        ),
    ),
    "POST, PUT, PATCH, DELETE steered into the API by a 307/308 from another origin or from "
    "outside the prefix": Scenario(
        "sent without the token, so the API refuses it; GET and HEAD redirected in keep the "
        "token, and so do redirects within the prefixes",
        (
            "test_an_unsafe_request_steered_into_the_api_by_another_origin_gets_no_token",
            "test_an_unsafe_request_steered_into_the_api_from_outside_the_prefix_gets_no_token",
            "test_a_safe_request_redirected_into_the_api_by_another_origin_gets_the_token",
            "test_an_unsafe_request_redirected_within_the_prefixes_keeps_the_token",
        ),
    ),
    "Caller's own credentials (auth=, session.auth, Authorization header) dropped by a "
    "cross-origin redirect that leads into the API": Scenario(
        "the bearer token never takes their place, on any hop",
        (
            "test_a_caller_authenticated_request_bounced_into_the_api_gets_no_token",
            "test_a_caller_authenticated_api_request_bounced_back_through_another_origin_gets_no_token",
        ),
    ),
    # Issue 11: real-IdP timing, the guard, errors that travel.
    "Token revoked or expired early after a 401 refresh (revocation, server clock ahead)": Scenario(
        "refreshed once more and the request replayed, in this process and its siblings; no "
        "curable 401 reaches a caller",
        (
            "test_a_token_revoked_after_a_401_refresh_is_refreshed_again",
            "test_a_sibling_process_refreshes_a_token_that_died_after_a_401_refresh",
            "test_a_server_clock_ahead_kills_tokens_early_and_no_401_reaches_the_caller",
            "test_early_deaths_between_refused_calls_are_all_cured",
        ),
    ),
    "Always-401 path mixed with working calls, from threads and processes": Scenario(
        "one wasted refresh per token for the refusing path, at most two for many such paths; "
        "working calls never see a 401",
        (
            "test_an_always_401_path_mixed_with_working_calls_costs_one_wasted_refresh_per_token",
            "test_paths_that_refuse_every_token_cost_at_most_two_refreshes_per_token",
            "test_threads_mixing_refused_and_working_calls_cost_a_bounded_number_of_refreshes",
            "test_the_guard_travels_with_the_token_to_sibling_processes",
        ),
    ),
    "Model-based: sibling keepers, rotating tokens, early deaths, outages (hypothesis)": Scenario(
        "no refresh token redeemed twice, no newer token overwritten, no refreshed token lost, "
        "no curable 401 returned, refreshes for incurable 401s bounded",
        ("test_keeper_model",),
    ),
    "Errors pickled and copied (process pools, error trackers, the back-off)": Scenario(
        "every exported error keeps its type, message and fields",
        (
            "test_every_error_survives_pickle_and_copy",
            "test_a_token_file_error_comes_back_from_a_process_pool_intact",
            "test_a_401_after_an_early_refresh_failed_on_the_lock_raises_the_lock_error",
        ),
    ),
    # Issue 12, items 2, 4 (the deadline), 5, 10: a hostile token endpoint
    # (tests/test_attack_token_endpoint.py).
    "Errors from the token, device and revocation endpoints: refused grant, bad client, 503, a "
    "page echoing the request, an unusable answer, no connection": Scenario(
        "no error (its pickled bytes, request, response, cause, context, or the back-off's copy) "
        "holds the client secret, Basic credentials, a token or a device code; status, URL, "
        "error code and a redacted excerpt stay",
        (
            "test_errors_from_a_refresh_hold_no_credential",
            "test_an_error_from_a_custom_refresher_holds_no_credential",
            "test_errors_keep_what_helps_a_user",
            "test_a_client_credentials_error_holds_no_credential",
            "test_a_failed_revocation_holds_no_token",
            "test_device_login_errors_hold_no_device_code",
            "test_an_unreachable_endpoint_error_holds_no_credential",
        ),
    ),
    "Token endpoint trickling its answer a byte at a time over 8 s (timeout=1)": Scenario(
        "the exchange ends within its timeout in all, headers trickled or body (RefreshFailed: "
        "too slow)",
        (
            "test_a_trickled_answer_cannot_hold_a_refresh_past_its_timeout",
            "test_a_trickled_device_authorization_is_bounded_too",
        ),
    ),
    "Token endpoint answering 40 MiB, or 100 KB of gzip inflating to 96 MiB": Scenario(
        "RefreshFailed after at most 1 MiB read, decompressed size included; the client's "
        "memory grows by less than 16 MiB",
        (
            "test_a_huge_answer_is_refused_without_growing_memory",
            "test_an_answer_of_just_under_1_mib_is_read",
        ),
    ),
    "Deeply nested JSON ([ x 100000) from the token or device authorization endpoint": Scenario(
        "RefreshFailed, not RecursionError; the CLI exits 2 without a traceback",
        (
            "test_deeply_nested_json_from_the_token_endpoint_is_refresh_failed",
            "test_deeply_nested_json_from_the_device_endpoint_exits_2",
        ),
    ),
    # --- files, Redis and output, attacked (issue 12: items 3, 4, 6, 11-14)
    "Another local user plants a token file or a symlink in a shared (sticky) folder": Scenario(
        "TokenFileError saying what to do; the victim's file is never overwritten, no lock "
        "file appears beside it, the planted token is never sent; a lock file another user "
        "holds costs at most lock_timeout",
        (
            "test_a_link_planted_by_another_user_is_never_written_through",
            "test_login_import_does_not_write_through_a_planted_link",
            "test_a_link_planted_by_another_user_is_not_read",
            "test_a_token_file_planted_by_another_user_is_neither_used_nor_replaced",
            "test_a_session_sends_no_token_from_a_planted_file",
            "test_a_link_of_ones_own_through_a_link_of_another_user_is_refused",
            "test_a_victim_in_a_shared_folder_does_not_overwrite_its_own_file_through_a_planted_link",
            "test_a_victim_follows_links_of_its_own_and_of_root_to_a_file_of_its_own",
            "test_a_victim_refuses_a_token_file_of_root",
            "test_a_lock_file_held_by_another_user_costs_at_most_lock_timeout",
            "test_a_lock_file_planted_as_a_link_is_refused_and_its_target_untouched",
        ),
    ),
    (
        "Redis store: token endpoint slower than lock_ttl; holder frozen (SIGSTOP) past lock_ttl"
    ): Scenario(
        "a live holder's lock is renewed: one token call, no reuse; a frozen holder's lock "
        "expires, the others go on, and the resumed holder cannot overwrite their token",
        (
            "test_a_token_endpoint_slower_than_lock_ttl_does_not_let_a_second_host_reuse_the_grant",
            "test_the_lock_is_released_at_once_and_no_longer_renewed_when_the_holder_finishes",
            "test_a_frozen_holder_lets_others_go_on_and_cannot_overwrite_their_token",
        ),
    ),
    "Token endpoint answers with a 2 MiB id_token (1.8 MB once stored)": Scenario(
        "the oversized extra field is dropped with a warning; the file stays readable by all",
        (
            "test_an_oversized_extra_field_is_dropped_with_a_warning_and_the_file_stays_readable",
            "test_a_hostile_server_with_a_huge_id_token_does_not_brick_the_file_for_the_others",
        ),
    ),
    "Token endpoint answers expires_in 0 or negative": Scenario(
        "an unknown expiry (a 401 refreshes it): one token call for 10 requests",
        ("test_an_expiry_of_zero_or_less_does_not_refresh_on_every_request",),
    ),
    "Error page of 96 MiB to redact": Scenario(
        "costs what a 64 KiB one costs; no part of a secret left at the cut",
        (
            "test_redacting_a_96_mib_error_page_costs_what_a_small_one_costs",
            "test_a_secret_straddling_the_cut_leaves_no_part_of_it_behind",
        ),
    ),
    "Expiry of 1e12 or 1e300 s (status, status --json, login --import)": Scenario(
        "shown cleanly (after the year 9999), never a crash",
        (
            "test_status_shows_a_far_future_expiry_cleanly",
            "test_importing_a_far_future_expiry_succeeds_cleanly",
        ),
    ),
    "Terminal escapes in a server's error_description or a token's scope": Scenario(
        "refresh and status print them escaped (\\x1b), never raw",
        (
            "test_a_servers_terminal_escapes_reach_refresh_and_status_escaped",
            "test_an_excerpt_escapes_control_characters",
        ),
    ),
    # Issue 11: a test world as harsh as real servers, and tests that never flake.
    "Test server as harsh as real ones: lifetimes counted from the whole second of issue, access "
    "tokens revoked early, clock ahead or behind, random early death, random 503s": Scenario(
        "each behaves as documented, checked with plain requests rather than the client; the "
        "random ones repeat with their seed; a random 503 never follows another",
        (
            "test_an_access_token_dies_at_its_issue_second_plus_its_lifetime",
            "test_a_lifetime_under_two_seconds_is_not_rounded",
            "test_revoke_access_tokens_kills_every_live_one_and_keeps_refresh_tokens",
            "test_a_clock_moved_at_run_time_ends_tokens_early_or_late",
            "test_random_early_death_spreads_over_the_lifetime_and_repeats_with_its_seed",
            "test_an_early_death_is_enforced_by_the_api",
            "test_random_token_failures_are_per_call_never_twice_in_a_row_and_seeded",
        ),
    ),
    "Storm against node oidc-provider, 2-second tokens it ends up to a second early, 8 x 2 and "
    "16 x 4": Scenario(
        "no caller error, token-endpoint calls within the tokens that came due, no refresh "
        "token presented twice",
        ("test_a_storm_on_2_second_tokens_shows_no_caller_an_error_and_redeems_each_refresh_once",),
    ),
    (
        "Workers SIGKILLed, or dying on their own, after their callers saw failures (demo, soak)"
    ): Scenario(
        "the kind of every failure is reported, killed workers' too; an unexpected death is a "
        "failure of its own",
        ("test_the_failures_of_killed_workers_keep_their_kinds",),
    ),
    # --- issue 13: the token endpoint on the user's network, client authentication, logins
    "Token endpoint and API on HTTPS from a private CA, reachable only through a proxy; "
    "verify and proxies set on the session alone": Scenario(
        "refreshes and API calls work, with settings changed after the session was built; "
        "without them a clear RefreshFailed; the token endpoint gets none of the caller's auth, "
        "headers or cookies",
        (
            "test_the_refresh_goes_through_the_sessions_proxy_and_private_ca",
            "test_without_the_settings_the_refresh_fails_clearly_and_works_once_they_are_set",
            "test_the_token_endpoint_gets_nothing_of_the_callers_credentials",
        ),
    ),
    "A token endpoint echoing the client assertion or an extra header in its error": Scenario(
        "neither reaches the error's message, its kept answer or its pickle",
        (
            "test_a_rejected_assertion_is_absent_from_the_error_even_when_the_server_echoes_it",
            "test_an_extra_headers_value_never_appears_in_an_error",
        ),
    ),
    "A discovery document naming another issuer, or plain-http endpoints": Scenario(
        "refused (ClientRejected) before any credential is sent",
        (
            "test_a_document_naming_another_issuer_is_refused_before_any_credential_is_sent",
            "test_a_document_pointing_credentials_at_plain_http_is_refused",
            "test_an_issuer_the_document_does_not_name_is_refused",
        ),
    ),
    "Browser login: a forged callback, another login's state, a refusal, no callback": Scenario(
        "the forged callback is refused and changes nothing; the wrong state, the refusal and "
        "the timeout raise LoginRequired with nothing redeemed; the listener is closed after",
        (
            "test_a_forged_callback_with_another_state_changes_nothing",
            "test_the_pasted_address_is_checked_and_redeemed",
            "test_a_refused_sign_in_raises_login_required_and_redeems_nothing",
            "test_no_callback_ends_at_the_timeout",
            "test_the_code_is_redeemed_with_pkce_and_the_listener_is_closed",
        ),
    ),
    (
        "Token endpoint answering a redirect with a 64 MiB body; a pooled connection it dropped"
    ): Scenario(
        "the redirect is refused as too large after 1 MiB, never followed; the next refresh "
        "opens a new connection and succeeds",
        (
            "test_a_redirect_with_a_huge_body_is_read_within_the_answer_limit",
            "test_a_pooled_connection_the_server_closed_does_not_fail_the_next_refresh",
        ),
    ),
    "An API answering 403 to an expired token, or always at one path": Scenario(
        "with refresh_on=(401, 403): one refresh and one replay; at a path that always refuses, "
        "one wasted refresh, then the 403s go back",
        (
            "test_with_refresh_on_403_a_dead_token_is_refreshed_and_the_call_replayed",
            "test_a_path_that_always_answers_403_gets_one_wasted_refresh_only",
        ),
    ),
    # --- issue 14: the httpx front ends (tests of the same name in tests/test_front_ends.py
    # also run, over requests, httpx and asyncio, in the rows above) ---
    "Requests, httpx and asyncio processes on one token file: 4 x 2 threads, 2 x 2 threads and "
    "2 x 100 tasks, 4-second rotating tokens (local server and node oidc-provider; a token "
    "file, or Redis only)": Scenario(
        "no caller error, token-endpoint calls within the tokens that came due, no reuse",
        (
            "test_requests_httpx_and_asyncio_processes_share_one_refresh_per_expiry",
            "test_requests_httpx_and_asyncio_processes_share_the_providers_rotating_tokens",
            "test_every_front_end_shares_the_token_one_of_them_refreshed",
        ),
    ),
    "Async: 500 tasks waiting for a 200 ms refresh; a task cancelled mid-refresh or while "
    "another process holds the lock": Scenario(
        "the event loop keeps running (its longest pause during the refresh is measured); one "
        "refresh; the cancelled task's refresh is completed and stored, the lock released, and "
        "the next task uses the new token; a lock held elsewhere costs the waiting tasks one "
        "lock_timeout together",
        (
            "test_the_event_loop_keeps_running_while_500_tasks_wait_for_a_slow_refresh",
            "test_tasks_that_find_the_token_expired_share_one_refresh",
            "test_a_task_cancelled_during_its_refresh_leaves_the_new_token_stored",
            "test_a_task_cancelled_while_it_waits_for_the_lock_leaves_it_free",
            "test_tasks_waiting_for_a_lock_held_elsewhere_each_get_a_lock_timeout_at_once",
        ),
    ),
    "httpx: a streamed body after a 401; a missing, refused or failing token": Scenario(
        "the 401 comes back readable and the token is refreshed; LoginRequired or RefreshFailed "
        "(requests.RequestException subclasses) without a secret; the file kept",
        (
            "test_a_streamed_body_is_not_replayed_and_the_401_comes_back_readable",
            "test_a_missing_token_file_asks_for_a_login_with_a_typed_error",
            "test_a_refused_refresh_token_raises_login_required_without_the_secrets",
            "test_a_failing_token_endpoint_raises_refresh_failed_and_keeps_the_file",
        ),
    ),
    "DPoP storm: requests, httpx and asyncio processes, nonces required, token file and Redis": (
        Scenario(
            "no caller error, no reuse, refreshes within the tokens due, one key in every "
            "proof, no jti twice",
            (
                "test_a_dpop_storm_of_8_processes_by_2_refreshes_once_per_expiry_with_right_proofs",
                "test_a_dpop_storm_of_16_processes_by_4_refreshes_once_per_expiry_with_right_proofs",
            ),
        )
    ),
    "A token endpoint's 200 trickled past the deadline, two hosts on one Redis store": Scenario(
        "the caller is released at the deadline; the answer is read on under the lock and "
        "stored; the other host adopts it; the refresh token is presented once",
        ("test_a_begun_answer_cut_off_by_the_deadline_is_stored_for_every_host",),
    ),
    "A custom refresher that raises anything (an SDK's error, a KeyError)": Scenario(
        "RefreshFailed with the cause; a valid token keeps serving; the cool-down holds",
        (
            "test_a_custom_refresher_that_raises_anything_never_fails_a_request_whose_token_is_valid",
            "test_a_custom_refresher_that_raises_anything_gives_refresh_failed_within_its_cool_down",
        ),
    ),
    "Forbidden items and streamed uploads at paths that refuse every token": Scenario(
        "at most the guard's two refreshes per token; a token that dies where it worked is "
        "still cured",
        (
            "test_a_path_refused_for_good_costs_at_most_the_guards_refreshes_though_the_token_works",
            "test_with_refresh_on_403_a_forbidden_item_is_not_a_refresh_each",
            "test_streamed_bodies_to_a_path_refused_for_good_cost_at_most_the_guards_refreshes",
        ),
    ),
}


def scenario_of(test_name: str) -> str | None:
    """The scenario a test function belongs to, if any."""
    for name, scenario in SCENARIOS.items():
        if test_name in scenario.tests:
            return name
    return None
