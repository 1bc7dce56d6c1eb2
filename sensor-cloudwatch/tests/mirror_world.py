"""The AWS side of tests/mirror.rs, through boto3 (a client other than the one under test).

    mirror_world.py URL REGION setup            -> JSON: the VPC, the sensor's interface, and per
                                                   instance its endpoint, address and interface
    mirror_world.py URL REGION state            -> JSON: targets, filters, sessions as moto holds them
    mirror_world.py URL REGION move ENI IP      -> JSON: a failover: a new interface at IP in ENI's
                                                   subnet, ENI deleted; prints the new interface's id
    mirror_world.py URL REGION flags            -> JSON: every EC2 operation's input members, from
                                                   botocore's own service model (what `aws ec2` takes)
"""
import json
import sys

import boto3
import botocore.session

url, region, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
kw = dict(endpoint_url=url, region_name=region,
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
rds = boto3.client("rds", **kw)


def tags(x):
    return {t["Key"]: t["Value"] for t in x.get("Tags", [])}


if cmd == "setup":
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=region + "a")
    b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24", AvailabilityZone=region + "b")
    subnets = [a["Subnet"]["SubnetId"], b["Subnet"]["SubnetId"]]
    sensor = ec2.create_network_interface(SubnetId=subnets[0], PrivateIpAddress="10.0.1.99",
                                          Description="rds-sensor mirroring")
    rds.create_db_subnet_group(DBSubnetGroupName="dbs", DBSubnetGroupDescription="dbs",
                               SubnetIds=subnets)
    out = {"vpc": vpc, "sensor_eni": sensor["NetworkInterface"]["NetworkInterfaceId"],
           "instances": {}}
    for ident, engine, port, subnet, ip in [
        ("orders-pg", "postgres", 5432, subnets[0], "10.0.1.10"),
        ("shop-my", "mysql", 3306, subnets[1], "10.0.2.20"),
    ]:
        rds.create_db_instance(DBInstanceIdentifier=ident, Engine=engine, Port=port,
                               DBInstanceClass="db.t3.micro", MasterUsername="admin",
                               MasterUserPassword="not-a-secret-1", AllocatedStorage=20,
                               DBSubnetGroupName="dbs")
        # What RDS makes in the customer's VPC for an instance (moto's RDS makes none).
        eni = ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=ip,
                                           Description="RDSNetworkInterface")
        out["instances"][ident] = {"ip": ip,
                                   "eni": eni["NetworkInterface"]["NetworkInterfaceId"]}
    # An interface of another VPC at the same address must not be taken for the instance's.
    other = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    osub = ec2.create_subnet(VpcId=other, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_network_interface(SubnetId=osub, PrivateIpAddress="10.0.1.10",
                                 Description="RDSNetworkInterface")
    for db in rds.describe_db_instances()["DBInstances"]:
        out["instances"][db["DBInstanceIdentifier"]]["endpoint"] = db["Endpoint"]["Address"]
    print(json.dumps(out))
elif cmd == "state":
    print(json.dumps({
        "targets": [{"id": t["TrafficMirrorTargetId"], "eni": t.get("NetworkInterfaceId"),
                     "tags": tags(t)}
                    for t in ec2.describe_traffic_mirror_targets()["TrafficMirrorTargets"]],
        "filters": [{"id": f["TrafficMirrorFilterId"], "tags": tags(f)}
                    for f in ec2.describe_traffic_mirror_filters()["TrafficMirrorFilters"]],
        "sessions": sorted(
            [{"id": s["TrafficMirrorSessionId"], "eni": s["NetworkInterfaceId"],
              "target": s["TrafficMirrorTargetId"], "filter": s["TrafficMirrorFilterId"],
              "number": s["SessionNumber"], "packet_length": s.get("PacketLength"),
              "tags": tags(s)}
             for s in ec2.describe_traffic_mirror_sessions()["TrafficMirrorSessions"]],
            key=lambda s: s["eni"]),
    }))
elif cmd == "move":
    old, ip = sys.argv[4], sys.argv[5]
    n = ec2.describe_network_interfaces(NetworkInterfaceIds=[old])["NetworkInterfaces"][0]
    new = ec2.create_network_interface(SubnetId=n["SubnetId"], PrivateIpAddress=ip,
                                       Description="RDSNetworkInterface")
    ec2.delete_network_interface(NetworkInterfaceId=old)
    print(json.dumps(new["NetworkInterface"]["NetworkInterfaceId"]))
elif cmd == "flags":
    model = botocore.session.get_session().get_service_model("ec2")
    out = {}
    for op in model.operation_names:
        shape = model.operation_model(op).input_shape
        out[op] = sorted(shape.members) if shape else []
    print(json.dumps(out))
else:
    sys.exit("unknown command " + cmd)
