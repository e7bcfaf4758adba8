"""The demo scenarios of operator controls: a guard halting a bad canary, and the kill switch with its undo."""
from __future__ import annotations

import time
from collections import Counter

from rulegate.evaluator import bucket_of

from .demo_client import HOST, DemoClient, NotAvailable, Reply, ScenarioFailed, Steps, iso, pct
from .faults import describe
from .sample_rules import GUARD_RULE, RAMP_RULE, guarded_ramp

GUARD_SECONDS = 60  # how long traffic may run before the guard must have halted the ramp
SEARCH = "/search"
KILL_ROUTES = ("/", "/beta", "/pay", "/checkout/pay", "/old/x", SEARCH)


# -- guard --------------------------------------------------------------------------------------------------


def _guard_available(demo: DemoClient) -> tuple[dict, str]:
    """Return (rule, etag) of the guarded rule; raise NotAvailable when this build has no guards."""
    try:
        from rulegate.ramps import guarded_policies  # noqa: F401 - the guard watcher's module
    except ImportError:
        raise NotAvailable("ramp guards (docs/rules.md \"Guards\") are not in this build") from None
    found = demo.rule(GUARD_RULE)
    if found is None:
        raise ScenarioFailed(f"rule {GUARD_RULE} is not in namespace {demo.namespace} (the demo seeds it)")
    return found


def _guarded_rule(demo: DemoClient) -> dict:
    found = demo.rule(GUARD_RULE)
    if found is None:
        raise ScenarioFailed(f"rule {GUARD_RULE} disappeared from namespace {demo.namespace}")
    return found[0]


def _ramp(rule: dict) -> dict:
    return next(p["ramp"] for p in rule["policies"] if p["type"] == "percent" and "ramp" in p)


def _rearm(demo: DemoClient, step: Steps, rule: dict, etag: str) -> dict:
    """Write a moving ramp again when an earlier run halted it (a flat ramp is not judged); return the rule."""
    ramp = _ramp(rule)
    if ramp["from"] != ramp["to"]:
        return rule
    fresh = guarded_ramp(int(time.time()))
    body = {k: v for k, v in rule.items() if k not in ("updated_at", "updated_by")}
    body["policies"] = [dict(p, ramp=fresh) if p["type"] == "percent" and "ramp" in p else p
                        for p in rule["policies"]]
    written = demo.api_json("PUT", f"/namespaces/{{ns}}/rules/{GUARD_RULE}", body, {"If-Match": etag})
    step(f"the ramp was halted by an earlier run: wrote a new ramp {pct(fresh['from'])} -> {pct(fresh['to'])} "
         f"(revision {written.get('revision')})")
    return _guarded_rule(demo)


def _halts_since(demo: DemoClient, since: int) -> list[dict]:
    """Return the history entries after revision `since` written by the guard watcher for the guarded rule."""
    page = demo.api_json("GET", f"/namespaces/{{ns}}/history?since={since}&rule={GUARD_RULE}&limit=50")
    return [e for e in page.get("entries", []) if e.get("actor") == "guard"]


def _search_traffic(demo: DemoClient, n: int, counts: Counter, offset: int) -> None:
    """Send n /search requests of distinct users through nginx and the agent (each agent decision is carried out
    against the backend and its outcome reported to /v1/report)."""
    for i in range(n):
        uid = f"searcher-{offset + i}"
        reply = demo.gateway(SEARCH, uid)
        counts["nginx " + _answer(reply)] += 1
        decision = demo.decide(SEARCH, uid)
        upstream = decision.get("upstream")
        if decision.get("action") != "proxy" or upstream not in demo.ep.backends:
            counts[f"agent {decision.get('action')}"] += 1
            continue
        backend = demo.backend(upstream, SEARCH)
        counts[f"agent {upstream} {_answer(backend)}"] += 1
        demo.report(decision, backend.status, (backend.received - backend.sent) * 1000)


def _answer(reply: Reply) -> str:
    return reply.body.strip() if reply.status == 200 else f"HTTP {reply.status}"


def scenario_guard(demo: DemoClient, step: Steps) -> None:
    """Fail the /search canary (`flaky`) and watch ruleadmin's guard watcher halt its ramp."""
    rule, etag = _guard_available(demo)
    rule = _rearm(demo, step, rule, etag)
    ramp, guard = _ramp(rule), _ramp(rule)["guard"]
    limits = ", ".join(f"{k} {guard[k]}" for k in ("max_error_increase", "max_p95_ratio") if k in guard)
    step(f"admin API: {GUARD_RULE} on {HOST}{SEARCH} ramps `flaky` {pct(ramp['from'])} -> {pct(ramp['to'])}, "
         f"guarded against control `{guard['control']}` ({limits}; window {guard['window']} s, min "
         f"{guard['min_requests']} requests, on breach {guard['on_breach']})")
    since = demo.revision()
    step(f"fault on (rulegate-dev fault on): {describe(demo.fault('on'))}")
    counts, sent, deadline, halts = Counter(), 0, time.monotonic() + GUARD_SECONDS, []
    while not halts:
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"no guard halt of {GUARD_RULE} in the history after {GUARD_SECONDS} s of "
                                 f"traffic ({dict(counts)}); is `ruleadmin guard-watcher` running?")
        _search_traffic(demo, 25, counts, sent)
        sent += 25
        halts = _halts_since(demo, since)
    step(f"{sent} users on /search through nginx and the agent: " + ", ".join(f"{k} {v}" for k, v in
                                                                            sorted(counts.items())))
    halt = halts[0]
    step(f"the guard watcher halted the ramp: revision {halt.get('revision')} by actor {halt.get('actor')!r} "
         f"(op {halt.get('op')!r}) at {iso(halt.get('ts') or time.time())}")
    flat = _ramp(_guarded_rule(demo))
    step.note(f"the ramp now: {pct(flat['from'])} -> {pct(flat['to'])} (flat: not judged again)")
    demo.fault("off")
    _search_after_halt(demo, step, flat)


def _search_after_halt(demo: DemoClient, step: Steps, flat: dict) -> None:
    """Check that, once the gateways applied the halt, /search routes as the flat ramp says."""
    deadline = time.monotonic() + 10
    while True:
        counts = Counter(_answer(demo.gateway(SEARCH, f"after-halt-{i}")) for i in range(100))
        if flat["to"] > 0 or set(counts) <= {"stable"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    step(f"fault off; 100 users on /search now: {dict(counts)}")
    if flat["to"] == 0 and set(counts) != {"stable"}:
        raise ScenarioFailed(f"after a revert halt /search should answer `stable` only, got {dict(counts)}")


# -- kill switch --------------------------------------------------------------------------------------------


def _uid_for(demo: DemoClient) -> str:
    """Return a user whose /beta bucket is high (it stays on `stable` until the ramp's last step), so the routes'
    answers before and after the switch compare whatever the ramp does meanwhile."""
    found = demo.rule(RAMP_RULE)
    salt = RAMP_RULE
    if found is not None:
        salt = next((p.get("salt", RAMP_RULE) for p in found[0]["policies"] if p["type"] == "percent"), RAMP_RULE)
    return next(f"ks-user-{i}" for i in range(100_000) if bucket_of(salt, f"ks-user-{i}") >= 9500)


def _answers(demo: DemoClient, uid: str) -> dict[str, tuple[int, str]]:
    out = {}
    for path in KILL_ROUTES:
        reply = demo.gateway(path, uid)
        out[path] = (reply.status, reply.body if reply.status != 301 else reply.headers.get("location", ""))
    return out


def _wait_answers(demo: DemoClient, uid: str, want, seconds: float = 10.0) -> tuple[dict, float]:
    """Return (answers, seconds waited) once want(answers) holds, or the last answers after `seconds`."""
    t0 = time.monotonic()
    while True:
        answers = _answers(demo, uid)
        if want(answers) or time.monotonic() - t0 > seconds:
            return answers, time.monotonic() - t0
        time.sleep(0.1)


def _wait_agent(demo: DemoClient, uid: str, want, seconds: float = 10.0) -> tuple[dict, float]:
    """Return (the agent's decision for /, seconds waited) once want(decision) holds, or the last one after
    `seconds`."""
    t0 = time.monotonic()
    while True:
        decision = demo.decide("/", uid)
        if want(decision) or time.monotonic() - t0 > seconds:
            return decision, time.monotonic() - t0
        time.sleep(0.1)


def _kill_available(demo: DemoClient) -> list:
    reply = demo.api("GET", "/namespaces/{ns}/kill-switches")
    if reply.status == 404 and "kill" not in reply.body:
        raise NotAvailable("kill switches (POST /namespaces/{ns}/kill-switches) are not in this build")
    if reply.status != 200:
        raise ScenarioFailed(f"GET /kill-switches answered {reply.status}: {reply.body[:200]}")
    return reply.json().get("kill_switches", [])


def scenario_kill_switch(demo: DemoClient, step: Steps) -> None:
    """Engage a namespace kill switch over REST, watch every route answer the preset, undo it exactly."""
    engaged = _kill_available(demo)
    if engaged:
        ids = ", ".join(str(s.get("id")) for s in engaged)
        raise ScenarioFailed(f"kill switch(es) already engaged: {ids}; undo them first (DELETE "
                             f"/api/v1/namespaces/{demo.namespace}/kill-switches/ID, or the web UI)")
    demo.fault("off")
    uid = _uid_for(demo)
    before, agent_before = _answers(demo, uid), demo.decide("/", uid)
    step("before: " + "; ".join(f"{p} -> {s} {b.strip()[:30]!r}" for p, (s, b) in before.items()))
    done = demo.api_json("POST", "/namespaces/{ns}/kill-switches", {"scope": "namespace"})
    switch, undone = done["kill_switch"], None
    try:
        _while_engaged(demo, step, uid, done)
        undone = demo.api_json("DELETE", f"/namespaces/{{ns}}/kill-switches/{switch['id']}")
    finally:
        if undone is None:  # a failed expectation: never leave the demo killed
            demo.api("DELETE", f"/namespaces/{{ns}}/kill-switches/{switch['id']}")
    step(f"DELETE (undo) {switch['id']}: revision {undone.get('revision')}, exact: {undone.get('exact')} (digest "
         f"{str(undone.get('digest'))[:12]} = before {str(undone.get('digest_before'))[:12]})")
    if undone.get("exact") is not True:
        raise ScenarioFailed(f"the undo is not exact: {undone}")
    after, waited = _wait_answers(demo, uid, lambda a: a == before)
    step(f"every route answers as before the switch (nginx, {waited:.1f} s after the undo)")
    if after != before:
        raise ScenarioFailed("routes differ from before the switch: " + str(
            {p: (before[p], after[p]) for p in KILL_ROUTES if before[p] != after[p]}))
    decision, waited = _wait_agent(demo, uid, lambda d: d.get("rule_id") == agent_before.get("rule_id"))
    step.note(f"agent /v1/decide for /: {decision.get('action')} {decision.get('upstream')} (rule "
              f"{decision.get('rule_id')}, {waited:.1f} s after the undo)")
    if decision != {**agent_before, "revision": decision.get("revision")}:
        raise ScenarioFailed(f"the agent decides otherwise than before the switch: {decision} (was {agent_before})")


def _while_engaged(demo: DemoClient, step: Steps, uid: str, done: dict) -> None:
    """Print the engaged switch and check that nginx and the agent answer its preset everywhere."""
    switch = done["kill_switch"]
    action = switch["action"]
    step(f"POST /namespaces/{demo.namespace}/kill-switches {{\"scope\": \"namespace\"}}: switch {switch['id']}, "
         f"{len(switch['rule_ids'])} kill rule(s), revision {done.get('revision')}; preset {action.get('type')} "
         f"{action.get('status')}")
    preset = (action.get("status"), action.get("body", ""))
    answers, waited = _wait_answers(demo, uid, lambda a: all(v == preset for v in a.values()))
    step(f"every route answers the preset {preset[0]} {preset[1].strip()!r} (nginx, {waited:.1f} s after the write)")
    off = {p: v for p, v in answers.items() if v != preset}
    if off:
        raise ScenarioFailed(f"routes not answering the kill switch's preset: {off}")
    decision, waited = _wait_agent(demo, uid, lambda d: (d.get("action"), d.get("status")) == ("respond", preset[0]))
    step.note(f"agent /v1/decide for /: {decision.get('action')} {decision.get('status')} "
              f"(rule {decision.get('rule_id')}, {waited:.1f} s after the write)")
    if (decision.get("action"), decision.get("status")) != ("respond", preset[0]):
        raise ScenarioFailed(f"the agent does not answer the preset: {decision}")
