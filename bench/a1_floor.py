"""runbook's a1 beside its floor: a hand-written boto3 script that makes exactly a1's
resources, fresh and on a no-op re-run, in wall time and in AWS calls.

    python bench/a1_floor.py [--repeat 3]

Each side runs in a new process against a moto server of its own, started empty: first
fresh, then again on what it made (the no-op re-run). Wall time is the process's, start-up
and imports included, as an operator sees it; each figure is the median of --repeat
rounds, the sides taking turns to go first. Calls are counted where both sides are
counted the same way: at the moto server, one per HTTP request (`CountingServer`), so
that runbook's preflight, lock and account check are in its figure, as they are in its
run. The lock's three SSM calls and the account check (STS) may come on top of the floor
(issue 19): the calls' ratio is printed with them taken off, and the raw count beside
it; runbook's wall time is compared with the floor's when the floor makes them too
(`--allowed`: their clients and calls, as runbook makes them), and the ratio to the bare
floor is printed beside it.

The floor (`floor`, `--floor URL`) is what a careful engineer would write for the same
resources: the names and settings of config/prod.yaml (read with PyYAML), each kind
found with one describe by name or tags, and the settings runbook keeps converged read
where they are not in that describe (the VPC's two DNS attributes, the parameter group's
rds.force_ssl, the secrets' fields); what is missing is made with its final settings,
tags and password in the create call. It does not check another environment's tags,
adopt untagged resources, check engine versions or zones, or wait for the cluster:
runbook does, and that is its margin.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import string
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, calls, machine, report, runbook, workdir  # noqa: E402

GOAL = 1.3
# What issue 19 lets runbook make on top of the floor: its account check and its lock.
ALLOWED = Counter({"sts:GetCallerIdentity": 1, "ssm:PutParameter": 1,
                   "ssm:GetParameter": 1, "ssm:DeleteParameter": 1})


# -- the moto server, counting ---------------------------------------------------------

class Requests:
    """The AWS requests one server received, as "service:Operation"."""

    def __init__(self):
        self.seen: list[str] = []

    def wsgi(self, app):
        def counted(environ, start_response):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            self.seen.append(operation_of(environ, body))
            return app(environ, start_response)
        return counted

    def take(self) -> Counter:
        taken, self.seen = Counter(self.seen), []
        return taken


def operation_of(environ: dict, body: bytes) -> str:
    """"service:Operation" of one request: the service from the signature's credential
    scope, the operation from X-Amz-Target (JSON protocols) or Action (query ones)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.split("Credential=", 1)[-1].split(",", 1)[0].split("/")
    service = scope[3] if len(scope) > 3 else "?"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    query.update(urllib.parse.parse_qs(body.decode(errors="replace")))
    action = (query.get("Action") or [f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"])[0]
    return f"{service}:{action}"


@contextmanager
def counting_server():
    """A moto server on 127.0.0.1, its account empty, that counts what it is sent:
    (URL, Requests)."""
    import logging

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (DomainDispatcherApplication,
                                               MotoRequestHandler, create_backend_app)
    from werkzeug.serving import make_server

    from runbook.sandbox import rds as sandbox_rds

    requests = Requests()

    class CountingServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = requests.wsgi(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(self._ip_address, self._port, app, True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sandbox_rds.install()  # DescribeDBEngineVersions, which moto 5.2.5 lacks
    server = CountingServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's accounts live in this process, shared by its servers: empty them.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset",
                                                  method="POST")).read()
    requests.take()
    try:
        yield url, requests
    finally:
        server.stop()


def writes(counted: Counter) -> int:
    from runbook.aws.clients import is_write

    return sum(n for op, n in counted.items()
               if is_write(op.split(":", 1)[1]) and op not in ALLOWED)


# -- the floor: a hand-written script ------------------------------------------------------

def floor(endpoint: str, allowed: bool = False) -> None:
    """Make a1's resources if missing, with boto3 only; print {"calls", "writes"}.
    `allowed`: with runbook's account check and lock around the work too, as runbook
    makes them (GetCallerIdentity; the lock's PutParameter, GetParameter and, at the
    end, DeleteParameter), not counted in "calls": what issue 19 lets runbook spend on
    top of the floor, so that the wall times compare like with like."""
    import boto3
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "prod.yaml").read_text())
    net, db, names = cfg["network"], cfg["database"], cfg["secrets"]
    region, env, name = cfg["region"], "prod", net["name"]
    session = boto3.Session(region_name=region)
    sent = Counter()

    def client(service):
        made = session.client(service, endpoint_url=endpoint)
        made.meta.events.register("before-call.*.*", lambda model, **_: sent.update(
            ["write" if not model.name.startswith(("Describe", "Get", "List", "BatchGet"))
             else "read"]))
        return made

    if allowed:
        session.client("sts", endpoint_url=endpoint).get_caller_identity()
        ssm = session.client("ssm", endpoint_url=endpoint)
        lock = f"/runbook/{env}/lock"
        ssm.put_parameter(Name=lock, Type="String", Overwrite=False,
                          Value=json.dumps({"holder": "bench/a1_floor.py", "pid": os.getpid()}))
        ssm.get_parameter(Name=lock)
    ec2, rds, sm = client("ec2"), client("rds"), client("secretsmanager")

    def tags(tag_name, step):
        return [{"Key": k, "Value": v} for k, v in sorted({
            **cfg.get("tags", {}), "Name": tag_name, "runbook:env": env,
            "runbook:step": step, "runbook:created": "true"}.items())]

    def spec(kind, tag_name, step="network"):
        return [{"ResourceType": kind, "Tags": tags(tag_name, step)}]

    def missing(call):
        try:
            return call() is None
        except Exception as exc:  # noqa: BLE001 - "not found" only
            if "NotFound" not in type(exc).__name__ and "NotFound" not in str(exc):
                raise
            return True

    # -- network: the VPC, private and public subnets, route tables, the gateway
    found = ec2.describe_vpcs(Filters=[{"Name": "tag:runbook:env", "Values": [env]},
                                       {"Name": "tag:Name", "Values": [f"{name}-vpc"]}])["Vpcs"]
    if found:
        vpc = found[0]["VpcId"]
        for attribute, key in (("enableDnsSupport", "EnableDnsSupport"),
                               ("enableDnsHostnames", "EnableDnsHostnames")):
            if not ec2.describe_vpc_attribute(VpcId=vpc, Attribute=attribute)[key]["Value"]:
                ec2.modify_vpc_attribute(VpcId=vpc, **{key: {"Value": True}})
        in_vpc = [{"Name": "vpc-id", "Values": [vpc]}]
        subnets = {s["CidrBlock"]: s["SubnetId"]
                   for s in ec2.describe_subnets(Filters=in_vpc)["Subnets"]}
        tables = {tag["Value"]: t
                  for t in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]
                  for tag in t.get("Tags", ()) if tag["Key"] == "Name"}
        gateways = ec2.describe_internet_gateways(Filters=[
            {"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"]
        groups = ec2.describe_security_groups(Filters=in_vpc + [
            {"Name": "group-name", "Values": [f"{db['cluster_id']}-db"]}])["SecurityGroups"]
    else:
        vpc = ec2.create_vpc(CidrBlock=net["cidr"],
                             TagSpecifications=spec("vpc", f"{name}-vpc"))["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnets, tables, gateways, groups = {}, {}, [], []

    def subnet(wanted, kind):
        if wanted["cidr"] not in subnets:
            subnets[wanted["cidr"]] = ec2.create_subnet(
                VpcId=vpc, CidrBlock=wanted["cidr"], AvailabilityZone=wanted["az"],
                TagSpecifications=spec("subnet", f"{name}-{kind}-{wanted['az']}"),
            )["Subnet"]["SubnetId"]
        return subnets[wanted["cidr"]]

    for wanted in net["subnets"]:
        subnet_id = subnet(wanted, "private")
        table_name = f"{name}-private-rt-{wanted['az']}"
        if table_name not in tables:
            table = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec(
                "route-table", table_name))["RouteTable"]["RouteTableId"]
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet_id)
    public = [subnet(wanted, "public") for wanted in net.get("public_subnets", ())]
    if public:
        if gateways:
            gateway = gateways[0]["InternetGatewayId"]
        else:
            gateway = ec2.create_internet_gateway(TagSpecifications=spec(
                "internet-gateway", f"{name}-igw"))["InternetGateway"]["InternetGatewayId"]
            ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
        if f"{name}-public" not in tables:
            table = ec2.create_route_table(VpcId=vpc, TagSpecifications=spec(
                "route-table", f"{name}-public"))["RouteTable"]["RouteTableId"]
            ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0",
                             GatewayId=gateway)
            for subnet_id in public:
                ec2.associate_route_table(RouteTableId=table, SubnetId=subnet_id)

    # -- database: its group, subnet group, TLS-only parameter group, cluster, instance
    cluster_id = db["cluster_id"]
    group = groups[0]["GroupId"] if groups else ec2.create_security_group(
        GroupName=f"{cluster_id}-db", VpcId=vpc, Description=f"Aurora cluster {cluster_id}",
        TagSpecifications=spec("security-group", f"{cluster_id}-db", "database"))["GroupId"]
    private = [subnets[w["cidr"]] for w in net["subnets"]]
    subnet_group = f"{cluster_id}-subnets"
    if missing(lambda: rds.describe_db_subnet_groups(DBSubnetGroupName=subnet_group)):
        rds.create_db_subnet_group(DBSubnetGroupName=subnet_group, SubnetIds=private,
                                   DBSubnetGroupDescription=f"Private subnets of {name}",
                                   Tags=tags(subnet_group, "database"))
    params = f"{cluster_id}-params"
    force_ssl = [{"ParameterName": "rds.force_ssl", "ParameterValue": "1",
                  "ApplyMethod": "pending-reboot"}]
    if missing(lambda: rds.describe_db_cluster_parameter_groups(
            DBClusterParameterGroupName=params)):
        rds.create_db_cluster_parameter_group(
            DBClusterParameterGroupName=params, Description=f"TLS only for {cluster_id}",
            DBParameterGroupFamily="aurora-postgresql" + str(db["engine_version"]).split(".")[0],
            Tags=tags(params, "database"))
        rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=params,
                                              Parameters=force_ssl)
    elif not any(p["ParameterName"] == "rds.force_ssl" and p.get("ParameterValue") == "1"
                 for p in rds.describe_db_cluster_parameters(
                     DBClusterParameterGroupName=params)["Parameters"]):
        rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=params,
                                              Parameters=force_ssl)
    values = sm.batch_get_secret_value(SecretIdList=[names["db"], names["app_config"]])
    held = {v["Name"]: json.loads(v["SecretString"]) for v in values["SecretValues"]}
    db_value = held.get(names["db"], {})
    try:
        cluster = rds.describe_db_clusters(DBClusterIdentifier=cluster_id)["DBClusters"][0]
        new_cluster = False
    except rds.exceptions.DBClusterNotFoundFault:
        alphabet = string.ascii_letters + string.digits + "!#$%^&*()-_=+[]{}:,.?~"
        db_value.setdefault("password", "".join(secrets.choice(alphabet) for _ in range(40)))
        db_value.setdefault("password_id", "pw-" + secrets.token_hex(8))
        cluster = rds.create_db_cluster(
            DBClusterIdentifier=cluster_id, Engine="aurora-postgresql",
            EngineVersion=str(db["engine_version"]), DatabaseName=db["name"], Port=5432,
            MasterUsername=db["master_username"], MasterUserPassword=db_value["password"],
            DBSubnetGroupName=subnet_group, DBClusterParameterGroupName=params,
            VpcSecurityGroupIds=[group], StorageEncrypted=True,
            EnableIAMDatabaseAuthentication=True,
            DeletionProtection=db["deletion_protection"],
            ServerlessV2ScalingConfiguration={"MinCapacity": db["min_capacity"],
                                              "MaxCapacity": db["max_capacity"]},
            CopyTagsToSnapshot=True, Tags=tags(cluster_id, "database") + [
                {"Key": "runbook:password-id", "Value": db_value["password_id"]}],
        )["DBCluster"]
        new_cluster = True
    if new_cluster or not rds.describe_db_instances(Filters=[
            {"Name": "db-cluster-id", "Values": [cluster_id]}])["DBInstances"]:
        rds.create_db_instance(DBInstanceIdentifier=f"{cluster_id}-1",
                               DBClusterIdentifier=cluster_id, Engine="aurora-postgresql",
                               DBInstanceClass="db.serverless", PubliclyAccessible=False,
                               Tags=tags(f"{cluster_id}-1", "database"))

    # -- store-secrets: the DB secret (RDS style) and the app-config secret
    wanted = {
        names["db"]: {**db_value, "engine": "postgres", "host": cluster["Endpoint"],
                      "port": 5432, "dbname": db["name"], "username": db["master_username"],
                      "dbClusterIdentifier": cluster_id},
        names["app_config"]: {**held.get(names["app_config"], {}), "env": env,
                              "region": region, "db_secret_name": names["db"],
                              "db_cluster_id": cluster_id, "db_name": db["name"],
                              **names.get("app_settings", {})},
    }
    wanted[names["app_config"]].setdefault("jwt_secret", secrets.token_urlsafe(48))
    for secret_name, value in wanted.items():
        if secret_name not in held:
            sm.create_secret(Name=secret_name, SecretString=json.dumps(value, sort_keys=True),
                             Tags=tags(secret_name, "store-secrets"))
        elif held[secret_name] != value:
            sm.put_secret_value(SecretId=secret_name,
                                SecretString=json.dumps(value, sort_keys=True))
    if allowed:
        ssm.delete_parameter(Name=lock)
    print(json.dumps({"calls": sum(sent.values()), "writes": sent["write"]}))


def run_floor(url: str, allowed: bool = False) -> tuple[float, dict]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "eu-central-1"}   # as _common.runbook runs runbook
    env.pop("AWS_PROFILE", None)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--floor", url,
                           *(["--allowed"] if allowed else [])], capture_output=True,
                          text=True, env=env)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


# -- one round, and the figures ------------------------------------------------------------

def floor_round(allowed: bool = False) -> dict:
    with counting_server() as (url, requests):
        fresh_s, fresh = run_floor(url, allowed)
        fresh_calls = requests.take() - ALLOWED
        again_s, again = run_floor(url, allowed)
        again_calls = requests.take() - ALLOWED
    assert fresh["calls"] == sum(fresh_calls.values()), "the floor's own count differs"
    assert again["writes"] == 0, "the floor's re-run wrote"
    return {"fresh": (fresh_s, fresh_calls), "noop": (again_s, again_calls)}


def runbook_round() -> dict:
    with counting_server() as (url, requests), workdir() as cwd:
        env = {"AWS_ENDPOINT_URL": url}
        fresh_s, proc = runbook("run", "--phase", "a1", cwd=cwd, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        fresh_calls = requests.take()
        fresh_report = report(cwd, "a1")
        again_s, proc = runbook("run", "--phase", "a1", cwd=cwd, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        again_calls = requests.take()
        again_report = report(cwd, "a1")
    return {"fresh": (fresh_s, fresh_calls, fresh_report),
            "noop": (again_s, again_calls, again_report)}


def label(kind: str) -> str:
    return "no-op" if kind == "noop" else kind


def table(floors: list[dict], allowed_floors: list[dict], runs: list[dict]) -> None:
    """Wall time and calls of each side, and the ratios beside the goal. Issue 19 lets
    runbook make its account check and lock on top of the floor: wall times are compared
    with the floor that makes them too (`floor(allowed=True)`), calls with them taken off
    runbook's count. The ratio to the bare floor is printed beside each."""
    print(f"{'':<14}{'floor':>10}{'+ allowed':>11}{'runbook':>10}{'- allowed':>11}"
          f"{'ratio':>9}   goal")
    for kind in ("fresh", "noop"):
        floor_s = statistics.median(r[kind][0] for r in floors)
        with_allowed_s = statistics.median(r[kind][0] for r in allowed_floors)
        runbook_s = statistics.median(r[kind][0] for r in runs)
        print(f"{label(kind) + ' wall':<14}{floor_s:>8.2f} s{with_allowed_s:>9.2f} s"
              f"{runbook_s:>8.2f} s{'':>11}{runbook_s / with_allowed_s:>8.2f}x   <= {GOAL}x   "
              f"({runbook_s / floor_s:.2f}x the bare floor)")
        floor_n, ours = sum(floors[0][kind][1].values()), sum(runs[0][kind][1].values())
        allowed = sum((runs[0][kind][1] & ALLOWED).values())
        print(f"{label(kind) + ' calls':<14}{floor_n:>10d}{'':>11}{ours:>10d}"
              f"{ours - allowed:>11d}{(ours - allowed) / floor_n:>8.2f}x   <= {GOAL}x   "
              f"({ours / floor_n:.2f}x with the {allowed} allowed)")
        for side, rounds in (("floor", floors), ("runbook", runs)):
            counts = sorted({sum(r[kind][1].values()) for r in rounds})
            if len(counts) > 1:
                print(f"{'':<14}({side}'s calls differed between rounds: {counts})")


def breakdown(floors: list[dict], runs: list[dict]) -> None:
    """Which calls runbook makes beyond the floor (the allowed ones taken off)."""
    print(f"allowed on top of the floor, taken off: {', '.join(sorted(ALLOWED))}")
    for kind in ("fresh", "noop"):
        beyond = runs[0][kind][1] - ALLOWED - floors[0][kind][1]
        short = floors[0][kind][1] - runs[0][kind][1]
        print(f"runbook beyond the floor, {label(kind)}: "
              + ", ".join(f"{op} x{n}" for op, n in sorted(beyond.items())))
        if short:
            print("  the floor's, not runbook's: "
                  + ", ".join(f"{op} x{n}" for op, n in sorted(short.items())))
    noop = runs[0]["noop"]
    print(f"no-op writes: runbook's report {calls(noop[2], 'write')}, at the server "
          f"{writes(noop[1])} (the lock's SSM calls aside); the floor's "
          f"{writes(floors[0]['noop'][1])}")
    print("runbook's report, no-op (its steps' calls only): " + ", ".join(
        f"{s['name']} {s['api_calls']['read']}r/{s['api_calls']['write']}w"
        for s in noop[2]["steps"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--floor", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--allowed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor(args.floor, args.allowed)
        return
    print(f"machine: {machine()}; median of {args.repeat} rounds, each side in a new "
          "process against a moto server of its own")
    floors, allowed_floors, runs = [], [], []
    for number in range(args.repeat):
        sides = [lambda: floors.append(floor_round()),
                 lambda: allowed_floors.append(floor_round(allowed=True)),
                 lambda: runs.append(runbook_round())]
        for side in sides[number % 3:] + sides[:number % 3]:   # each goes first in turn
            side()
    table(floors, allowed_floors, runs)
    breakdown(floors, runs)


if __name__ == "__main__":
    main()
