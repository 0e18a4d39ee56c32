"""config.yaml loading: values, every class of mistake with its line, secrets, and `bridge check-config`."""

from __future__ import annotations

import io
import textwrap
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import (
    ALWAYS_OPEN,
    DAYS,
    ConfigError,
    FileConfig,
    Problem,
    check_config_main,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "config.full.yaml"


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text))
    return caught.value.details


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, [str(problem) for problem in problems]
    return problems[0]


def run_check(path: str | None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = check_config_main(path, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("30m", 1800.0), ("24h", 86400.0), ("7d", 604800.0), ("250ms", 0.25), ("1.5h", 5400.0),
     (" 10 s ", 10.0), ("45", 45.0), (12, 12.0), (0.5, 0.5)],
)  # fmt: skip
def test_parse_duration_reads_units(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "abc", "10 hours", "0s", "-5s", "1e3s", "5w", True, None, [1], float("inf")]
)
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**9), st.sampled_from(["s", "m", "h", "d"]))
def test_duration_round_trips_through_its_shortest_spelling(count: int, unit: str) -> None:
    seconds = parse_duration(f"{count}{unit}")
    spelled = format_duration(seconds)
    assert parse_duration(spelled) == seconds
    assert len(spelled) <= len(f"{count}{unit}")


@given(st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_any_positive_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_picks_the_largest_exact_unit() -> None:
    assert [format_duration(s) for s in (86400.0, 5400.0, 90.0, 0.25)] == ["1d", "90m", "90s", "0.25s"]


# --- values ---------------------------------------------------------------------------------------


def test_shipped_config_sends_every_handover_to_slack_channel() -> None:
    """A first run with only the README's settings: no route, no outside-hours channel, no default
    channel in the file, so SLACK_CHANNEL takes every handover."""
    config = load_config(REPO_CONFIG)
    assert config.routes == [] and config.business_hours is None
    assert config.slack.default_channel is None


def test_full_example_loads_with_its_documented_values() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert config.slack.default_channel == ("C0DEFAULT0",)
    history = config.history
    assert (history.max_entries, history.ttl_s, history.shown_on_open) == (50, 86400.0, 20)
    assert config.handover.idle_timeout_s == 1800.0
    assert [trigger.name for trigger in config.handover.triggers] == [
        "escalation_requested",
        "need_help",
        "nounderstood_at_least",
        "confidence_below",
        "intents",
        "keywords",
    ]
    assert [route.name for route in config.routes] == ["quebec", "french", "billing", "escalations"]
    french = config.routes[1]
    assert french.match.lang == ["fr-*"]
    assert french.match.platform == ["webchat", "messenger"]
    assert french.mention == "<!subteam^S0FRENCH1>"
    assert config.business_hours is not None
    assert config.business_hours.opening[0] == ((540, 1080),)  # mon
    assert config.business_hours.opening[5] == ((600, 780),)  # sat
    assert config.business_hours.opening[6] == ()  # sun: closed
    assert date(2026, 12, 25) in config.business_hours.closed_on
    assert config.webhook.dedupe_window_s == 600.0
    assert config.delivery.backoff_base_s == 0.5
    assert config.replies.private_prefixes == ["note:", "//"]


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config == FileConfig()
    assert [trigger.name for trigger in config.handover.triggers] == ["escalation_requested", "need_help"]
    assert config.routes == []
    assert config.business_hours is None
    assert config.handover.ignore_simulator is True


def test_empty_file_means_defaults() -> None:
    assert parse_config("# nothing yet\n") == FileConfig()


def test_route_business_hours_inherit_override_or_opt_out() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            business_hours: {timezone: Europe/Paris, weekly: {mon-fri: "09:00-18:00"}}
            routes:
              - {name: inherits, channel: C0AAA}
              - {name: always, channel: C0BBB, business_hours: always}
              - {name: nulled, channel: C0CCC, business_hours: null}
              - name: own
                business_hours: {timezone: America/Toronto, weekly: {sat-sun: "10:00-12:00"}}
            """
        )
    )
    inherits, always, nulled, own = config.routes
    assert inherits.hours(config.business_hours) is config.business_hours
    assert always.hours(config.business_hours) == ALWAYS_OPEN
    assert nulled.hours(config.business_hours) == ALWAYS_OPEN
    assert inherits.model_copy(update={"name": "always", "channel": "C0BBB"}) != always
    own_hours = own.hours(config.business_hours)
    assert own_hours is not None and own_hours.timezone == "America/Toronto"
    assert own.channel is None


def test_weekly_spellings() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            business_hours:
              timezone: UTC
              weekly:
                Monday: "08:00-12:00, 14:00-18:00"
                tue: ["09:00-10:00", "11:00-24:00"]
                wed: closed
                thu: off
                fri-sun: "10:00-11:00"
            """
        )
    )
    hours = config.business_hours
    assert hours is not None
    assert hours.opening == (
        ((480, 720), (840, 1080)),
        ((540, 600), (660, 1440)),
        (),
        (),
        ((600, 660),),
        ((600, 660),),
        ((600, 660),),
    )


def test_week_ranges_may_wrap_around_sunday() -> None:
    config = parse_config('business_hours: {timezone: UTC, weekly: {sat-mon: "09:00-10:00"}}\n')
    assert config.business_hours is not None
    open_days = [day for day, ranges in zip(DAYS, config.business_hours.opening, strict=True) if ranges]
    assert open_days == ["mon", "sat", "sun"]


def test_closed_on_accepts_a_single_date() -> None:
    config = parse_config("business_hours: {timezone: UTC, weekly: {mon: closed}, closed_on: 2026-12-25}\n")
    assert config.business_hours is not None
    assert config.business_hours.closed_on == [date(2026, 12, 25)]


# --- mistakes, each with its line -----------------------------------------------------------------


def test_unknown_key_is_located_and_a_close_key_suggested() -> None:
    problem = only_problem(
        """\
        slack:
          default_channel: C0AAA
        history:
          max_entires: 10
        """
    )
    assert (problem.line, problem.column) == (4, 3)
    assert problem.where == "history.max_entires"
    assert "unknown key 'max_entires'" in problem.message
    assert "did you mean max_entries?" in problem.hint


def test_unknown_section() -> None:
    problem = only_problem("slack: {}\nroute:\n  - name: x\n")
    assert (problem.line, problem.where) == (2, "route")
    assert "did you mean routes?" in problem.hint


def test_wrong_type_is_located() -> None:
    problem = only_problem("history:\n  max_entries: lots\n")
    assert (problem.line, problem.column, problem.where) == (2, 16, "history.max_entries")
    assert "whole number" in problem.hint


def test_bad_duration_is_located() -> None:
    problem = only_problem("handover:\n  idle_timeout: 30 minutes\n")
    assert (problem.line, problem.where) == (2, "handover.idle_timeout")
    assert "bad duration '30 minutes'" in problem.message
    assert "30m" in problem.hint


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("fr-[", "unbalanced '['"),
        ("fr-[!", "unbalanced '['"),
        ("[]", "unbalanced '['"),
        ("", "empty pattern"),
    ],
)
def test_bad_glob_is_located(pattern: str, fragment: str) -> None:
    problem = only_problem(f'routes:\n  - name: french\n    match:\n      lang: "{pattern}"\n')
    assert (problem.line, problem.where) == (4, "routes[0].match.lang")
    assert fragment in problem.message


def test_bad_glob_in_a_list_points_at_the_item() -> None:
    problem = only_problem(
        "routes:\n  - name: x\n    match:\n      platform:\n        - webchat\n        - 'mess[enger'\n"
    )
    assert (problem.line, problem.column, problem.where) == (6, 11, "routes[0].match.platform[1]")


@pytest.mark.parametrize(
    ("hours", "fragment"),
    [
        ("18:00-09:00", "does not end after it starts"),
        ("09:00-09:00", "does not end after it starts"),
        ("22:00-02:00", "does not end after it starts"),
        ("25:00-26:00", "not a time of day"),
        ("09:60-10:00", "not a time of day"),
        ("24:30-24:45", "not a time of day"),
        ("9h-18h", "bad time range"),
        ("", "bad time range"),
    ],
)
def test_bad_time_range_is_located(hours: str, fragment: str) -> None:
    problem = only_problem(f'business_hours:\n  timezone: UTC\n  weekly:\n    mon: "{hours}"\n')
    assert (problem.line, problem.where) == (4, "business_hours.weekly.mon")
    assert fragment in problem.message


def test_bad_day_and_day_given_twice() -> None:
    problems = problems_of(
        """\
        business_hours:
          timezone: UTC
          weekly:
            mon-fri: "09:00-18:00"
            funday: "09:00-10:00"
            wed: closed
        """
    )
    assert [(p.line, p.where) for p in problems] == [
        (5, "business_hours.weekly.funday"),
        (6, "business_hours.weekly.wed"),
    ]
    assert "unknown day 'funday'" in problems[0].message
    assert "wed is given twice, in 'mon-fri' and in 'wed'" in problems[1].message


def test_weekly_without_any_day_is_refused() -> None:
    problem = only_problem("business_hours:\n  timezone: UTC\n  weekly: {}\n")
    assert (problem.line, problem.where) == (3, "business_hours.weekly")
    assert "no opening hours" in problem.message


def test_unknown_time_zone_suggests_the_closest() -> None:
    problem = only_problem("business_hours:\n  weekly: {mon: '09:00-10:00'}\n  timezone: Europe/Pariss\n")
    assert (problem.line, problem.where) == (3, "business_hours.timezone")
    assert "Europe/Paris" in problem.hint


@pytest.mark.parametrize("channel", ["'#support'", "c0abcdef", "C0", "X0ABCDEF", "C0ABC-DEF", "U0ABCDEF"])
def test_channel_ids_that_cannot_be_slack_ids(channel: str) -> None:
    problem = only_problem(f"slack:\n  default_channel: {channel}\n")
    assert (problem.line, problem.where) == (2, "slack.default_channel")
    assert "is not a Slack channel ID" in problem.message


@pytest.mark.parametrize("channel", ["C0A", "G0123ABCD", "C0123FRENCH"])
def test_channel_ids_accepted(channel: str) -> None:
    assert parse_config(f"slack:\n  default_channel: {channel}\n").slack.default_channel == (channel,)


def test_direct_message_ids_are_refused() -> None:
    """Issue 14 item 4: replies in a DM would need other events and scopes; the bridge never reads them."""
    problem = only_problem("slack:\n  default_channel: D0123ABCD\n")
    assert (problem.line, problem.where) == (2, "slack.default_channel")
    assert "is a direct message" in problem.message and "/invite" in problem.hint


def test_channels_are_checked_everywhere() -> None:
    problems = problems_of(
        """\
        routes:
          - name: x
            channel: general
        business_hours:
          timezone: UTC
          weekly: {mon: "09:00-10:00"}
          outside_hours:
            channel: "#night"
        """
    )
    assert [(p.line, p.where) for p in problems] == [
        (3, "routes[0].channel"),
        (8, "business_hours.outside_hours.channel"),
    ]


def test_mention_must_be_slack_syntax() -> None:
    problem = only_problem("routes:\n  - name: x\n    mention: '@french-team'\n")
    assert (problem.line, problem.where) == (3, "routes[0].mention")
    assert "<!subteam^" in problem.hint


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("need_help", "expected a mapping, got text"),
        ("{}", "found 0 (none)"),
        ("{need_help: true, keywords: [agent]}", "found 2 (need_help, keywords)"),
        ("{need_help: false}", "need_help: false never opens"),
        ("{event: escalation}", "unknown event 'escalation'"),
        ("{keywords: []}", "an empty list never matches"),
        ("{keywords: ['?!']}", "has no letters or digits"),
        ("{confidence_below: 1.5}", "less than or equal to 1"),
        ("{nounderstood_at_least: 0}", "greater than or equal to 1"),
        ("{sentiment_below: 0.2}", "unknown key 'sentiment_below'"),
    ],
)
def test_bad_trigger_is_located(item: str, fragment: str) -> None:
    problem = only_problem(f"handover:\n  triggers:\n    - event: escalation_requested\n    - {item}\n")
    assert problem.line == 4
    assert problem.where.startswith("handover.triggers[1]")
    assert fragment in problem.message


def test_route_names_are_unique_and_default_is_reserved() -> None:
    problems = problems_of(
        """\
        routes:
          - name: french
          - name: default
          - name: french
          - match: {lang: en}
        """
    )
    assert [(p.line, p.where) for p in problems] == [
        (3, "routes[1].name"),
        (4, "routes[2].name"),
        (5, "routes[3].name"),
    ]
    assert "reserved" in problems[0].message
    assert "already used by routes[0]" in problems[1].message
    assert "required key 'name' is missing" in problems[2].message


def test_route_match_trigger_must_name_a_trigger() -> None:
    problem = only_problem("routes:\n  - name: x\n    match: {trigger: keyword}\n")
    assert (problem.line, problem.where) == (3, "routes[0].match.trigger")
    assert "matches no trigger" in problem.message


def test_bad_business_hours_keyword_on_a_route() -> None:
    problem = only_problem("routes:\n  - name: x\n    business_hours: never\n")
    assert (problem.line, problem.where) == (3, "routes[0].business_hours")


def test_impossible_date_is_located() -> None:
    problem = only_problem(
        "business_hours:\n  timezone: UTC\n  weekly: {mon: '09:00-10:00'}\n  closed_on: [2026-13-01]\n"
    )
    assert (problem.line, problem.where) == (4, "business_hours.closed_on[0]")
    assert "YYYY-MM-DD" in problem.hint


def test_yaml_syntax_error_is_located() -> None:
    problem = only_problem("slack:\n  default_channel: [C0AAA\nhistory: {}\n")
    assert problem.line == 3
    assert problem.message.startswith("YAML:")


def test_tabs_get_their_own_hint() -> None:
    problem = only_problem("slack:\n\tdefault_channel: C0AAA\n")
    assert problem.line == 2
    assert "spaces, not tabs" in problem.hint


def test_duplicate_yaml_key_is_reported() -> None:
    problem = only_problem("history:\n  ttl: 1h\n  max_entries: 5\n  ttl: 2h\n")
    assert (problem.line, problem.where) == (4, "history.ttl")
    assert "first on line 2" in problem.message


def test_merge_keys_are_not_duplicates() -> None:
    text = "delivery: &d {burst: 5, workers: 2}\nwebhook: {max_body_bytes: 2048}\n"
    assert parse_config(text).delivery.burst == 5


def test_top_level_must_be_a_mapping() -> None:
    problem = only_problem("- slack\n- history\n")
    assert problem.line == 1
    assert "must be a mapping" in problem.message


def test_every_problem_is_reported_in_file_order() -> None:
    text = textwrap.dedent(
        """\
        slack:
          default_channel: general
        history:
          ttl: forever
        handover:
          triggers:
            - need_help
        routes:
          - name: french
            match: {lang: "fr-["}
        business_hours:
          timezone: Mars/Olympus
          weekly: {mon: "18:00-09:00"}
        """
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bridge.yaml")
    error = caught.value
    assert [p.line for p in error.details] == [2, 4, 7, 10, 12, 13]
    lines = str(error).splitlines()
    assert lines[0] == "bridge.yaml: 6 problems"
    assert lines[1].startswith("bridge.yaml:2:20: slack.default_channel: 'general' is not a Slack channel ID")
    assert lines[1:] == error.problems
    assert all("(hint: " in line for line in lines[1:])


# --- secrets --------------------------------------------------------------------------------------

SECRET = "xoxb-1234567890-abcdefABCDEF"


def test_secret_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"slack:\n  default_channel: C0AAA\n  bot_token: {SECRET}\n")
    [problem] = caught.value.details
    assert (problem.line, problem.where) == (3, "slack.bot_token")
    assert "SLACK_BOT_TOKEN" in problem.hint
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "variable"),
    [("signing_secret", "SLACK_SIGNING_SECRET"), ("webhook_key", "SMARTLY_WEBHOOK_KEY"),
     ("reply_secret", "BRIDGE_REPLY_SECRET"), ("app_token", "SLACK_APP_TOKEN")],
)  # fmt: skip
def test_secret_keys_point_to_their_environment_variable(key: str, variable: str) -> None:
    problem = only_problem(f"slack:\n  {key}: hunter2hunter2\n")
    assert variable in problem.hint
    assert "hunter2" not in str(problem)


def test_token_value_in_a_known_field_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            f"slack:\n  default_channel: {SECRET}\nhandover:\n  triggers: [{{keywords: [{SECRET}]}}]\n"
        )
    assert [(p.line, p.where) for p in caught.value.details] == [
        (2, "slack.default_channel"),
        (4, "handover.triggers[0].keywords[0]"),
    ]
    assert all("looks like a Slack token" in p.message for p in caught.value.details)
    assert SECRET not in str(caught.value)


def test_app_token_value_names_slack_app_token() -> None:
    problem = only_problem(
        "business_hours:\n  timezone: UTC\n  weekly: {mon: closed}\n  outside_hours: {note: xapp-1-A0B1}\n"
    )
    assert "SLACK_APP_TOKEN" in problem.hint


# --- bridge check-config --------------------------------------------------------------------------


def test_check_config_accepts_the_full_example() -> None:
    code, out, err = run_check(str(EXAMPLE_CONFIG))
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"{EXAMPLE_CONFIG}: OK"
    assert "  keywords: conseiller, agent, humain, parler à quelqu'un" in out
    assert (
        "  french: lang=fr-* platform=webchat|messenger -> C0123FRENCH, mentions <!subteam^S0FRENCH1>" in out
    )
    assert "  otherwise -> C0DEFAULT0 (from the file: slack.default_channel)" in out
    assert "business hours: Europe/Paris: mon-fri 09:00-18:00; sat 10:00-13:00; sun closed" in out
    assert "warning" not in out


def test_check_config_lists_every_error_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"slack:\n  default_channel: general\n  token: {SECRET}\nhistory:\n  ttl: 0s\n")
    code, out, err = run_check(str(path))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == f"{path}: 3 problems"
    assert lines[1].startswith(f"{path}:2:20: slack.default_channel:")
    assert lines[2].startswith(f"{path}:3:3: slack.token:") and "environment variable" in lines[2]
    assert lines[3].startswith(f"{path}:5:8: history.ttl:")
    assert SECRET not in err


def test_check_config_missing_file_exits_2(tmp_path: Path) -> None:
    code, out, err = run_check(str(tmp_path / "nope.yaml"))
    assert (code, out) == (2, "")
    assert "cannot read the config file" in err


def test_check_config_path_from_environment_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = tmp_path / "from-env.yaml"
    from_env.write_text("slack:\n  default_channel: C0FROMENV\n")
    monkeypatch.setenv("BRIDGE_CONFIG", str(from_env))
    code, out, _ = run_check(None)
    assert code == 0 and "otherwise -> C0FROMENV" in out

    monkeypatch.delenv("BRIDGE_CONFIG")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("slack:\n  default_channel: C0CWD\n")
    code, out, _ = run_check(None)
    assert code == 0 and out.startswith("config.yaml: OK") and "otherwise -> C0CWD" in out


def test_check_config_names_the_effective_default_channel_and_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("slack:\n  default_channel: C0INFILE\nroutes:\n  - name: all\n")
    monkeypatch.delenv("SLACK_CHANNEL", raising=False)
    code, out, _ = run_check(str(path))
    assert code == 0 and "  otherwise -> C0INFILE (from the file: slack.default_channel)" in out
    monkeypatch.setenv("SLACK_CHANNEL", "C0FROMENV")
    code, out, _ = run_check(str(path))
    assert code == 0
    assert "  all: every event -> C0FROMENV" in out  # a route without a channel takes the default
    assert "  otherwise -> C0FROMENV (from the environment: SLACK_CHANNEL)" in out
    code, out, _ = run_check(str(REPO_CONFIG))
    assert code == 0 and "  otherwise -> C0FROMENV (from the environment: SLACK_CHANNEL)" in out


def test_check_config_refuses_a_channel_name_in_slack_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_CHANNEL", "general")
    code, out, err = run_check(str(REPO_CONFIG))
    assert (code, out) == (1, "")
    assert err.startswith("SLACK_CHANNEL: 'general' is not a Slack channel ID") and "#name" in err


def test_check_config_warns_about_routes_that_never_match(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            routes:
              - name: everything
                channel: C0ALL
              - name: french
                match: {lang: fr-*}
              - name: words
                match: {trigger: keywords}
            """
        )
    )
    code, out, _ = run_check(str(path))
    assert code == 0
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3
    assert warnings[0].startswith(f"warning: {path}:4:5: routes[1]: route 'french' never matches")
    assert f"{path}:7:22: routes[2].match.trigger:" in warnings[2]


def test_check_config_writes_to_sys_streams_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_main(str(REPO_CONFIG)) == 0
    assert capsys.readouterr().out.startswith(f"{REPO_CONFIG}: OK")
