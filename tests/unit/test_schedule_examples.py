"""examples/schedule: the cron line and the EventBridge Scheduler schedule run real job entry
points with options their own argparse parsers accept, and the schedule is accepted by the
Scheduler API (moto's server)."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = ROOT / "examples" / "schedule"
CRON = SCHEDULE / "score-weekly.cron"
EVENTBRIDGE = SCHEDULE / "emr-score-schedule.json"
POLICY = SCHEDULE / "scheduler-role-policy.json"
TRUST = SCHEDULE / "scheduler-role-trust-policy.json"
FAILED_RULE = SCHEDULE / "score-failed-rule.json"

#: cron field -> (lowest, highest) value
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
               ("day of week", 0, 7))  # fmt: skip
CRON_NAMES = {
    "month": ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    "day of week": ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}


def check_cron_field(text: str, name: str, low: int, high: int) -> None:
    """Raise ValueError unless ``text`` is a valid cron field (lists, ranges, steps, names)."""
    names = CRON_NAMES.get(name, [])
    for item in text.split(","):
        spec, _, step = item.partition("/")
        if step and not (step.isdigit() and int(step) >= 1):
            raise ValueError(f"{name}: bad step in {item!r}")
        if spec == "*":
            continue
        bounds = spec.split("-")
        if len(bounds) > 2:
            raise ValueError(f"{name}: bad range {item!r}")
        values = []
        for b in bounds:
            if b.lower() in names:
                values.append(names.index(b.lower()) + (1 if name == "month" else 0))
            elif b.isdigit():
                values.append(int(b))
            else:
                raise ValueError(f"{name}: {b!r} is not a number or name")
        if any(not low <= v <= high for v in values) or values != sorted(values):
            raise ValueError(f"{name}: {item!r} outside {low}-{high}")


def cron_entries(path: Path) -> list[tuple[list[str], str]]:
    """``(five schedule fields, command)`` of each job line (comments and VAR=value skipped)."""
    entries = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or re.match(r"^[A-Z_]+=", stripped):
            continue
        fields = stripped.split(None, 5)
        assert len(fields) == 6, f"not 5 schedule fields and a command: {line!r}"
        entries.append((fields[:5], fields[5]))
    return entries


def parse_job_args(script: str, args: list[str]) -> argparse.Namespace:
    """Parse ``args`` with the real parser of the job behind ``spark_jobs/<script>``.

    The script's ``from spark_clustering.jobs.<module> import main`` names the job; its
    ``main`` builds the parser and parses, and only the job run itself is replaced.
    """
    path = ROOT / "spark_jobs" / script
    assert path.is_file(), f"{script} is not in spark_jobs/"
    match = re.search(r"from (spark_clustering\.jobs\.\w+) import main", path.read_text())
    assert match, f"{script} does not call a spark_clustering.jobs main"
    module: Any = importlib.import_module(match.group(1))
    seen: list[argparse.Namespace] = []
    original = module.run
    module.run = lambda ns: seen.append(ns) or 0
    try:
        assert module.main(args) == 0
    finally:
        module.run = original
    return seen[0]


@pytest.mark.parametrize(
    ("text", "ok"),
    [("0 3 * * 1", True), ("*/15 0-6 1,15 jan-mar mon-fri", True), ("60 3 * * 1", False),
     ("0 24 * * 1", False), ("0 3 * 13 *", False), ("0 3 * * 8", False), ("0 3 5-1 * *", False),
     ("0 3 * * x", False), ("0 3 */0 * *", False)],
)  # fmt: skip
def test_cron_field_checker(text: str, ok: bool) -> None:
    def check() -> None:
        for value, (name, low, high) in zip(text.split(), CRON_FIELDS, strict=True):
            check_cron_field(value, name, low, high)

    if ok:
        check()
    else:
        with pytest.raises(ValueError):
            check()


def test_cron_line_is_valid_and_runs_the_score_job() -> None:
    entries = cron_entries(CRON)
    assert len(entries) == 1
    fields, command = entries[0]
    for value, (name, low, high) in zip(fields, CRON_FIELDS, strict=True):
        check_cron_field(value, name, low, high)
    assert fields[4] not in ("*", "*/1") and fields[2] == "*", "weekly: one day of the week"
    # cron turns an unescaped % into a newline
    assert not re.search(r"(?<!\\)%", command)
    words = shlex.split(command.replace("\\%", "%"))
    assert words[words.index("flock") + 1] == "-n"  # skip, do not queue, when a run is going on
    submit = words.index("spark-submit")
    assert words.index("flock") < submit
    script = next(w for w in words[submit:] if w.endswith(".py"))
    assert script == "spark_jobs/score_customers.py" and (ROOT / script).is_file()
    job_args = words[words.index(script) + 1 : words.index(">>")]
    job_args = [a.replace("$(date +%F)", "2026-11-23") for a in job_args]
    ns = parse_job_args(Path(script).name, job_args)
    assert ns.run_date == "2026-11-23"
    assert ns.model.startswith("s3://") and ns.output.endswith("/assignments")
    assert "2>&1" in words and "$(date +%F)" in words[words.index(">>") + 1]
    # exit code 3 (drift) and only it triggers the re-fit, which the segment job's parser takes
    refit = words.index("||")
    assert words[refit - 6 : refit] == ["2>&1;", "[", "$?", "-ne", "3", "]"]
    assert words[refit + 1] == "spark-submit"
    segment = words[refit + 1 :]
    script = next(w for w in segment if w.endswith(".py"))
    assert script == "spark_jobs/segment_customers.py"
    refit_args = segment[segment.index(script) + 1 : segment.index(">>")]
    refit_args = [a.replace("$(date +%F)", "2026-11-23") for a in refit_args]
    ns = parse_job_args("segment_customers.py", refit_args)
    assert ns.config == "conf/segment.toml" and ns.run_date == "2026-11-23"


def _schedule() -> dict[str, Any]:
    return json.loads(EVENTBRIDGE.read_text())


def test_eventbridge_schedule_adds_a_score_step() -> None:
    schedule = _schedule()
    assert re.fullmatch(r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)", schedule["ScheduleExpression"])
    target = schedule["Target"]
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:emr:addJobFlowSteps"
    request = json.loads(target["Input"])
    assert set(request) == {"JobFlowId", "Steps"} and request["JobFlowId"].startswith("j-")
    (step,) = request["Steps"]
    jar = step["HadoopJarStep"]
    assert jar["Jar"] == "command-runner.jar"
    args = jar["Args"]
    assert args[0] == "spark-submit"
    index = next(i for i, a in enumerate(args) if a.endswith(".py"))
    # spark-submit's own options come in --option value pairs before the script
    options = args[1:index]
    assert len(options) % 2 == 0 and all(o.startswith("--") for o in options[::2])
    ns = parse_job_args(args[index].rsplit("/", 1)[-1], args[index + 1 :])
    assert ns.run_date is None  # the job's default: the day it runs (UTC)
    assert ns.input.startswith("s3://")


def test_scheduler_role_may_only_add_steps_to_that_cluster() -> None:
    request = json.loads(_schedule()["Target"]["Input"])
    (statement,) = json.loads(POLICY.read_text())["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "elasticmapreduce:AddJobFlowSteps"
    assert statement["Resource"].endswith(f":cluster/{request['JobFlowId']}")
    account = _schedule()["Target"]["RoleArn"].split(":")[4]
    assert statement["Resource"].split(":")[4] == account
    (trust,) = json.loads(TRUST.read_text())["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == account


@pytest.mark.aws
def test_schedule_is_accepted_by_the_scheduler_api(aws_endpoint: str) -> None:
    import boto3

    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=aws_endpoint)
    role = iam.create_role(
        RoleName="spark-clustering-scheduler", AssumeRolePolicyDocument=TRUST.read_text()
    )["Role"]
    iam.put_role_policy(
        RoleName=role["RoleName"], PolicyName="add-steps", PolicyDocument=POLICY.read_text()
    )
    schedule = _schedule()
    schedule["Target"]["RoleArn"] = role["Arn"]
    scheduler = boto3.client("scheduler", region_name="us-east-1", endpoint_url=aws_endpoint)
    arn = scheduler.create_schedule(**schedule)["ScheduleArn"]
    assert arn.endswith(f"schedule/default/{schedule['Name']}")
    stored = scheduler.get_schedule(Name=schedule["Name"])
    assert stored["ScheduleExpression"] == schedule["ScheduleExpression"]
    assert stored["Target"]["Arn"] == schedule["Target"]["Arn"]
    assert json.loads(stored["Target"]["Input"]) == json.loads(schedule["Target"]["Input"])


@pytest.mark.aws
def test_failed_score_rule_matches_the_scheduled_step(aws_endpoint: str) -> None:
    """EMR marks a step FAILED on any non-zero exit, drift's 3 included: the rule matches the
    step the schedule adds, and the EventBridge API (moto's server) accepts it."""
    import boto3

    rule = json.loads(FAILED_RULE.read_text())
    pattern = json.loads(rule["EventPattern"])
    request = json.loads(_schedule()["Target"]["Input"])
    (step,) = request["Steps"]
    assert pattern["detail"]["name"] == [step["Name"]]
    assert pattern["detail"]["state"] == ["FAILED"] and pattern["source"] == ["aws.emr"]
    events = boto3.client("events", region_name="us-east-1", endpoint_url=aws_endpoint)
    arn = events.put_rule(**rule)["RuleArn"]
    assert arn.endswith(f"rule/{rule['Name']}")
    stored = events.describe_rule(Name=rule["Name"])
    assert json.loads(stored["EventPattern"]) == pattern
