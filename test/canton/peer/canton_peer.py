#!/usr/bin/env python3
"""A second, independent reader of Canton topology files (test peer; not product code).

Decodes with Google's protobuf runtime and the schema in canton_v30.proto (typed in from Canton's published
field numbers), recomputes every transaction hash and key fingerprint with hashlib, and prints JSON that the
test hands to openssl for signature verification. Usage: canton_peer.py OUTDIR FILE...
Each FILE is a single signed transaction (.cert: versioned SignedTopologyTransaction) or a collection
(versioned SignedTopologyTransactions, any other name).
"""
import hashlib
import atexit
import json
import os
import shutil
import struct
import sys
import tempfile

from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = tempfile.mkdtemp(prefix="canton-peer-")
atexit.register(shutil.rmtree, GEN, True)
if protoc.main(["protoc", f"-I{HERE}", f"--python_out={GEN}", os.path.join(HERE, "canton_v30.proto")]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, GEN)
import canton_v30_pb2 as pb  # noqa: E402

ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def multihash(purpose, data):
    return b"\x12\x20" + hashlib.sha256(struct.pack(">i", purpose) + data).digest()


def fingerprint(key):
    data = key.public_key
    if key.format == 4 and len(data) == 44 and data.startswith(ED25519_SPKI_PREFIX):
        data = data[12:]  # Ed25519: the raw 32 bytes
    return multihash(12, data).hex()


def unwrap(b):
    m = pb.UntypedVersionedMessage()
    m.ParseFromString(b)
    assert m.WhichOneof("wrapper") == "data", "not a versioned message"
    assert m.version == 30, f"version {m.version}"
    return m.data


def decode_signed(b, source, outdir, n):
    stt = pb.SignedTopologyTransaction()
    stt.ParseFromString(unwrap(b))
    tx = pb.TopologyTransaction()
    tx.ParseFromString(unwrap(stt.transaction))
    h = multihash(11, stt.transaction)
    kind = tx.mapping.WhichOneof("mapping")
    out = {
        "source": source,
        "kind": kind,
        "operation": tx.operation,
        "serial": tx.serial,
        "hash": h.hex(),
        # Google's encoder writes the same bytes back (field order, packing, defaults)
        "reencodes": pb.UntypedVersionedMessage(data=tx.SerializeToString(deterministic=True), version=30).SerializeToString()
        == stt.transaction,
        "proposal": stt.proposal,
        "keys": {},
        "signatures": [],
    }
    keys = out["keys"]
    if kind == "namespace_delegation":
        nsd = tx.mapping.namespace_delegation
        fp = fingerprint(nsd.target_key)
        keys[fp] = {"spki": nsd.target_key.public_key.hex(), "spec": nsd.target_key.key_spec, "usage": list(nsd.target_key.usage)}
        out.update(
            namespace=nsd.namespace,
            target=fp,
            restriction=nsd.WhichOneof("restriction"),
            mappings=list(nsd.can_sign_specific_mapings.mappings),
            is_root_delegation=nsd.is_root_delegation,
        )
    elif kind == "owner_to_key_mapping":
        otk = tx.mapping.owner_to_key_mapping
        out["member"] = otk.member
        out["mapped"] = []
        for pk in otk.public_keys:
            which = pk.WhichOneof("key")
            k = getattr(pk, which)
            fp = fingerprint(k)
            entry = {"fingerprint": fp, "kind": which, "spec": k.key_spec}
            if which == "signing_public_key":
                entry["usage"] = list(k.usage)
                keys[fp] = {"spki": k.public_key.hex(), "spec": k.key_spec, "usage": list(k.usage)}
            out["mapped"].append(entry)
    for i, s in enumerate(stt.signatures):
        base = os.path.join(outdir, f"{n}-{i}")
        with open(base + ".sig", "wb") as f:
            f.write(s.signature)
        with open(base + ".hash", "wb") as f:
            f.write(h)
        out["signatures"].append(
            {
                "signed_by": s.signed_by,
                "format": s.format,
                "algorithm": s.signing_algorithm_spec,
                "has_delegation": s.HasField("signature_delegation"),
                "sig_file": base + ".sig",
                "hash_file": base + ".hash",
            }
        )
    return out


def main():
    outdir = sys.argv[1]
    results = []
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            b = f.read()
        data = unwrap(b)
        if path.endswith(".cert"):
            results.append(decode_signed(b, path, outdir, len(results)))
        else:
            coll = pb.SignedTopologyTransactions()
            coll.ParseFromString(data)
            for j, e in enumerate(coll.signed_transaction):
                results.append(decode_signed(e, f"{path}#{j}", outdir, len(results)))
    json.dump(results, sys.stdout)


main()
