#!/usr/bin/env python3
"""A mianshen client in Python: stubs generated from the repository's protos, bearer-token auth.

    pip install -r requirements.txt
    python3 client.py --target 127.0.0.1:50051 --token demo-admin-token-0001

It prints what is served (generation, policies), the counts of every policy, streams the first
candidates of one policy, and checks one candidate's eligibility: every policy, its outcome and
the state of each condition. The stubs are generated into a temporary folder at start-up with
grpc_tools (a Python package that bundles the protocol compiler; nothing else is needed).
"""

import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
SERVICES = ["common", "match", "eligibility", "admin", "whatif", "profiles", "workflow", "supervision"]


def generate_stubs():
    """Compiles proto/mianshen/v1/*.proto into a temporary package and imports it."""
    out = tempfile.mkdtemp(prefix="mianshen-stubs-")
    files = [os.path.join("mianshen", "v1", f"{s}.proto") for s in SERVICES]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + files
    )
    if rc != 0:
        sys.exit(f"generating stubs failed (protoc exit {rc})")
    for d in ("mianshen", os.path.join("mianshen", "v1")):
        open(os.path.join(out, d, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    return {s: importlib.import_module(f"mianshen.v1.{s}_pb2") for s in SERVICES}, {
        s: importlib.import_module(f"mianshen.v1.{s}_pb2_grpc") for s in SERVICES if s != "common"
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051")
    ap.add_argument("--token", default="demo-admin-token-0001", help="a bearer token of the server's config")
    ap.add_argument("--policy", default="M01", help="the policy whose candidates are streamed")
    ap.add_argument("--first", type=int, default=5, help="how many candidates to print")
    args = ap.parse_args()

    pb, rpc = generate_stubs()
    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=30)
    auth = [("authorization", f"Bearer {args.token}")]

    admin = rpc["admin"].AdminStub(channel)
    info = admin.Info(pb["admin"].InfoRequest(), metadata=auth, timeout=10)
    print(f"serving generation {info.pin.generation} of {info.snapshot}: "
          f"{info.entities} entities, {len(info.policies)} policies, as of {info.pin.as_of}")

    match = rpc["match"].MatchStub(channel)
    counts = match.Count(pb["match"].CountRequest(), metadata=auth, timeout=10)
    for c in counts.counts:
        print(f"  {c.policy:<4} v{c.version} {c.name:<16} lead {c.lead:<3} "
              f"candidates {c.candidates:>7} to-verify {c.to_verify:>6} near-miss {c.near_miss:>7} "
              f"total {c.total_amount:,.0f} {c.period}")

    req = pb["match"].CandidatesRequest(policy=args.policy, with_keys=True, limit=args.first)
    keys = []
    for batch in match.Candidates(req, metadata=auth, timeout=30):
        for key, amount in zip(batch.keys, batch.amounts):
            keys.append(key)
            print(f"  candidate of {args.policy}: {key} amount {amount:g}")
    if not keys:
        print(f"{args.policy} has no candidates")
        return 0

    elig = rpc["eligibility"].EligibilityStub(channel)
    reply = elig.Check(pb["eligibility"].EligibilityRequest(key=keys[0], with_text=True), metadata=auth, timeout=10)
    outcome = pb["common"].Outcome
    state = pb["common"].State
    print(f"eligibility of {reply.key} ({reply.kind}), generation {reply.pin.generation}:")
    for p in reply.policies:
        line = f"  {p.policy:<4} {outcome.Name(p.outcome):<20}"
        if p.HasField("amount"):
            line += f" amount {p.amount:g} {p.period}"
        print(line)
        for c in p.conditions:
            if c.state != state.Value("STATE_TRUE"):
                print(f"        {state.Name(c.state):<14} {c.name}: {c.text}")

    # A call without a token is refused.
    try:
        match.Count(pb["match"].CountRequest(), timeout=10)
        print("error: an unauthenticated call was answered", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"without a token: {e.code().name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
