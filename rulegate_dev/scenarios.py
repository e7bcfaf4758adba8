"""`rulegate-dev scenario NAME`: progressive-delivery scenarios against the running demo, printed step by step as an
operator would watch them. Each returns 0 when what it shows happened, 1 with the failed expectation, 2 when the
feature is not in this build (or there is no demo to run against)."""
from __future__ import annotations

import math
import time
from collections import Counter
from functools import partial
from typing import Callable

from rulegate.evaluator import RuleSet, decide
from rulegate.request import Request
from rulegate.schema import ramp_share

from .demo_client import HOST, DemoClient, NotAvailable, Reply, ScenarioFailed, Steps, iso, pct, request
from .faults import FaultError, describe
from .sample_rules import BREAKER_RULE, FALLBACK_BODY, RAMP_RULE

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2
RAMP_USERS, AGENT_USERS = 1000, 300
PAY = "/pay"


# -- ramp ---------------------------------------------------------------------------------------------------


def _ramp_of(rule: dict) -> dict:
    for p in rule.get("policies", []):
        if p.get("type") == "percent" and "ramp" in p:
            return p["ramp"]
    raise ScenarioFailed(f"rule {rule['id']} has no ramped percent policy")


def _next_change(ramp: dict, now: float) -> int | None:
    """Return the first whole second after now at which the ramp's share differs from E(now) (None: never again);
    E is monotonic in time, so a binary search over (now, end] finds it."""
    share, lo, hi = ramp_share(ramp, now), max(math.floor(now), ramp["start"] - 1), ramp["end"]
    if hi <= now or ramp_share(ramp, hi) == share:
        return None
    while hi - lo > 1:  # ramp_share(lo) == share (or lo <= now), ramp_share(hi) != share
        mid = (lo + hi) // 2
        if mid > now and ramp_share(ramp, mid) != share:
            hi = mid
        else:
            lo = mid
    return hi


def _wrong_side(rs: RuleSet, path: str, answers: list[tuple[str, str, float, float]]) -> list[str]:
    """Return the users whose upstream is not the one rulegate's evaluator gives their key at the time of the
    request (either side is right for a request that crossed a step of the ramp)."""
    wrong = []
    for uid, got, sent, received in answers:
        expected = {decide(rs, Request(HOST, path, headers={"x-uid": uid}, now=t)).upstream
                    for t in (sent - 0.5, received)}  # (nginx's cached clock may lag a little)
        if got not in expected:
            wrong.append(f"{uid}: {got} (expected {' or '.join(sorted(map(str, expected)))})")
    return wrong


def _share_line(counts: Counter, n: int) -> str:
    return ", ".join(f"{name} {counts[name]} ({counts[name] / n:.1%})" for name in sorted(counts))


def scenario_ramp(demo: DemoClient, step: Steps, follow: bool = False) -> None:
    """Measure the /beta split through nginx and the agent against the ramp's effective share E(now); with follow,
    again after each change of the share until the ramp is done."""
    found = demo.rule(RAMP_RULE)
    if found is None:
        raise ScenarioFailed(f"rule {RAMP_RULE} is not in namespace {demo.namespace} (the demo seeds it)")
    rule, _ = found
    ramp = _ramp_of(rule)
    how = "linearly" if ramp["mode"] == "linear" else f"in {ramp['steps']} steps"
    step(f"admin API: rule {RAMP_RULE} on {HOST}/beta ramps canary {pct(ramp['from'])} -> {pct(ramp['to'])} {how} "
         f"from {iso(ramp['start'])} to {iso(ramp['end'])}")
    while True:
        nxt = _measure_ramp(demo, step, rule)
        if not follow or nxt is None:
            return
        step.note("waiting for the next change of the share (Ctrl-C to stop) ...")
        time.sleep(max(nxt - time.time(), 0) + 1)


def _measure_ramp(demo: DemoClient, step: Steps, rule: dict) -> int | None:
    """Print E(now) and the split measured through nginx, the agent and the admin API; return when the share
    changes next (None: never); raise ScenarioFailed when a gateway routes a user against the ramp."""
    ramp, now = _ramp_of(rule), time.time()
    share, nxt = ramp_share(ramp, now), _next_change(ramp, now)
    step(f"E(now) = {pct(share)} at {iso(now)}" + (f"; next change at {iso(nxt)} (in {nxt - now:.0f} s) to "
                                                  f"{pct(ramp_share(ramp, nxt))}" if nxt else "; the ramp is done"))
    rs = RuleSet([rule])
    answers, counts = [], Counter()
    for i in range(RAMP_USERS):
        uid = f"beta-{i}"
        reply = demo.gateway("/beta", uid)
        got = reply.body.strip() if reply.status == 200 else f"HTTP {reply.status}"
        counts[got] += 1
        answers.append((uid, got, reply.sent, reply.received))
    wrong = _wrong_side(rs, "/beta", answers)
    step(f"nginx: {RAMP_USERS} users on /beta -> {_share_line(counts, RAMP_USERS)}; E = {pct(share)}; "
         f"{len(wrong)} user(s) on the wrong side of the ramp")
    if wrong:
        raise ScenarioFailed(f"nginx routed {len(wrong)} user(s) against the ramp, e.g. {wrong[:3]}")
    agent_answers, agent_counts = [], Counter()
    for i in range(AGENT_USERS):
        uid, sent = f"beta-{i}", time.time()
        decision = demo.decide("/beta", uid)
        upstream = decision.get("upstream") or decision.get("action")
        agent_counts[upstream] += 1
        agent_answers.append((uid, upstream, sent, time.time()))
    wrong = _wrong_side(rs, "/beta", agent_answers)
    step(f"agent /v1/decide: {AGENT_USERS} users -> {_share_line(agent_counts, AGENT_USERS)}; "
         f"{len(wrong)} on the wrong side")
    if wrong:
        raise ScenarioFailed(f"the agent decided {len(wrong)} user(s) against the ramp, e.g. {wrong[:3]}")
    _ramp_exposure(demo, step, answers[0][2])
    return nxt


def _ramp_exposure(demo: DemoClient, step: Steps, since: float) -> None:
    """Show the fleet's exposure counts of the ramp rule (what the rules list and rule page show)."""
    deadline, best = time.monotonic() + 8, None
    while time.monotonic() < deadline:
        seen = demo.api_json("GET", "/namespaces/{ns}/fleet").get("exposure", {}).get("rules", {}).get(RAMP_RULE)
        if seen and (seen.get("last_match_at") or 0) >= math.floor(since):
            if best is None or seen.get("per_minute", 0) > best.get("per_minute", 0):
                best = seen
            if best.get("per_minute", 0) > 0:
                break
        time.sleep(0.3)
    if best is None:
        raise ScenarioFailed(f"the admin API's fleet exposure never counted {RAMP_RULE} (GET /fleet)")
    targets = ", ".join(f"{t} {v:.0f}/min" for t, v in sorted(best.get("targets", {}).items()))
    step(f"admin API GET /fleet: exposure of {RAMP_RULE} {best.get('per_minute', 0):.0f}/min ({targets or 'none'}), "
         f"last match {iso(best['last_match_at'])}")
    step.note(f"rule page (timeline, counts): {demo.ui('/ns/{ns}/rules/' + RAMP_RULE + '/')}")


# -- breaker ------------------------------------------------------------------------------------------------


def _pay_kind(reply: Reply) -> str:
    """Return what answered /pay: flaky (200), failure (flaky's 500), fallback (the breaker's static answer)."""
    if reply.status == 200 and reply.body.strip() == "flaky":
        return "flaky"
    if reply.status == 503 and reply.body == FALLBACK_BODY:
        return "fallback"
    if reply.status == 500:
        return "failure"
    return f"HTTP {reply.status} {reply.body[:40]!r}"


def _agent_pay(demo: DemoClient, uid: str) -> str:
    """Ask the agent for /pay, carry the decision out against the backend and report its outcome (as a gateway
    using the sidecar does); return what answered, like _pay_kind."""
    decision = demo.decide(PAY, uid)
    if decision.get("action") == "respond":
        return "fallback" if (decision.get("status"), decision.get("body")) == (503, FALLBACK_BODY) else \
            f"respond {decision.get('status')}"
    if decision.get("action") != "proxy" or decision.get("upstream") not in demo.ep.backends:
        return f"{decision.get('action')} {decision.get('upstream')}"
    reply = demo.backend(decision["upstream"], PAY)
    demo.report(decision, reply.status, (reply.received - reply.sent) * 1000)
    return _pay_kind(reply)


class PayTraffic:
    """/pay requests of distinct users through nginx and the agent, counted per gateway and answer."""

    def __init__(self, demo: DemoClient):
        self.demo, self.sent = demo, 0
        self.counts: dict[str, Counter] = {"nginx": Counter(), "agent": Counter()}

    def until(self, want: str, in_a_row: int, *, pause: float = 0.0, seconds: float = 30.0) -> None:
        """Send one request through each gateway at a time until each answered `want` `in_a_row` times in a row
        (a gateway done stops getting requests), `pause` seconds apart while one is not answering `want`;
        raise ScenarioFailed after `seconds`."""
        self.counts = {"nginx": Counter(), "agent": Counter()}
        streak, deadline = {"nginx": 0, "agent": 0}, time.monotonic() + seconds
        while min(streak.values()) < in_a_row:
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"/pay never answered {in_a_row} x {want} in a row through every gateway in "
                                     f"{seconds:.0f} s: {self.line()}")
            for gateway in [g for g, n in streak.items() if n < in_a_row]:
                uid = f"payer-{self.sent}"
                kind = _pay_kind(self.demo.gateway(PAY, uid)) if gateway == "nginx" else _agent_pay(self.demo, uid)
                self.sent += 1
                self.counts[gateway][kind] += 1
                streak[gateway] = streak[gateway] + 1 if kind == want else 0
            if pause and min(streak.values()) == 0:  # waiting for a change: no need to hurry
                time.sleep(pause)

    def line(self) -> str:
        """Return the counts of the last until() as text."""
        return "; ".join(f"{g}: " + ", ".join(f"{n} x {k}" for k, n in sorted(c.items()))
                         for g, c in self.counts.items())


def _breaker_states(demo: DemoClient, polls: int = 12) -> dict[str, dict | None]:
    """Return the breaker's state in each nginx worker that answered /rulegate/status and in the agent."""
    states = {}
    for _ in range(polls):
        status = demo.nginx_status()
        states[f"nginx worker {status['worker']['pid']}"] = (status.get("breakers") or {}).get(BREAKER_RULE)
    health = request(demo.ep.agent, "GET", "/healthz").json()
    states["agent"] = (health.get("breakers") or {}).get(BREAKER_RULE)
    return states


def _states_line(states: dict[str, dict | None]) -> str:
    return "; ".join(f"{who}: " + (f"{s['state']} ({s['requests']} requests, {s['errors']} errors in the window)"
                                   if s else "no requests yet") for who, s in sorted(states.items()))


def _wait_closed(demo: DemoClient, seconds: float = 10.0) -> dict[str, dict | None]:
    """Return the breaker states once every nginx worker seen and the agent have it closed, sending a few /pay
    requests between looks (a worker that got no probe yet is still half-open); raise ScenarioFailed after
    seconds."""
    deadline = time.monotonic() + seconds
    while True:
        states = _breaker_states(demo)
        not_closed = {who: s for who, s in states.items() if s and s["state"] != "closed"}
        if not not_closed:
            return states
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"the breaker is not closed everywhere: {_states_line(not_closed)}")
        for i in range(5):
            demo.gateway(PAY, f"late-payer-{i}")
        time.sleep(0.2)


def scenario_breaker(demo: DemoClient, step: Steps) -> None:
    """Open the /pay breaker (nginx and the agent) with an injected failure of `flaky`, then watch it probe and
    close again."""
    found = demo.rule(BREAKER_RULE)
    if found is None or "breaker" not in found[0]:
        raise ScenarioFailed(f"rule {BREAKER_RULE} (a degrade with a breaker) is not in namespace {demo.namespace}")
    cfg, traffic = found[0]["breaker"], PayTraffic(demo)
    recovery = cfg["open_seconds"] * 3 + 5
    step(f"admin API: {BREAKER_RULE} on {HOST}{PAY}: breaker window {cfg['window']} s, min {cfg['min_requests']} "
         f"requests, error ratio {cfg.get('error_ratio')}, open {cfg['open_seconds']} s, {cfg['probes']} probes")
    demo.fault("off")
    traffic.until("flaky", 10, pause=0.1, seconds=recovery)
    step(f"fault off: /pay is healthy: {traffic.line()}")
    step(f"fault on (rulegate-dev fault on): {describe(demo.fault('on'))}")
    traffic.until("fallback", 20)
    step(f"/pay failed, then the breaker opened (the last 20 answers the fallback 503 "
         f"{FALLBACK_BODY.strip()!r}): {traffic.line()}")
    step.note("breakers (nginx /rulegate/status, agent /healthz): " + _states_line(_breaker_states(demo)))
    step(f"fault off: {describe(demo.fault('off'))}; the breaker stays open for {cfg['open_seconds']} s")
    t_off = time.monotonic()
    traffic.until("flaky", 10, pause=0.1, seconds=recovery)
    step(f"half-open after open_seconds: probes passed and the breaker closed ({time.monotonic() - t_off:.1f} s, "
         f"the last 10 answers from flaky): {traffic.line()}")
    step.note("breakers (nginx /rulegate/status, agent /healthz): " + _states_line(_wait_closed(demo)))


# -- running ------------------------------------------------------------------------------------------------

Scenario = Callable[[DemoClient, Steps], None]


def scenarios(follow: bool = False) -> dict[str, Scenario]:
    """Return the scenarios by name, in the order `all` runs them (with follow, the ramp follows every change of
    its share until it is done)."""
    from .scenario_controls import scenario_guard, scenario_kill_switch
    return {"ramp": partial(scenario_ramp, follow=follow), "breaker": scenario_breaker, "guard": scenario_guard,
            "kill-switch": scenario_kill_switch}


def run_scenarios(names: list[str], demo: DemoClient, out: Callable[[str], object] = print,
                  follow: bool = False) -> int:
    """Run the named scenarios in order; return 0 when all showed what they should, 1 when one failed (the others
    still run), else 2 when one is not available in this build. The fault is switched off after each."""
    table, results = scenarios(follow), []
    for name in names:
        step = Steps(name, out)
        try:
            table[name](demo, step)
            out(f"[{name}] OK")
            results.append(EXIT_OK)
        except NotAvailable as exc:
            out(f"[{name}] not available in this build: {exc}")
            results.append(EXIT_UNAVAILABLE)
        except (ScenarioFailed, FaultError) as exc:
            out(f"[{name}] FAILED: {exc}")
            results.append(EXIT_FAILED)
        finally:
            try:
                demo.fault("off")
            except FaultError as exc:
                out(f"[{name}] could not switch the fault off: {exc}")
    return EXIT_FAILED if EXIT_FAILED in results else max(results, default=EXIT_OK)
