"""Week 7 against a moto server process on loopback (no AWS): idempotent provisioning of the bucket, the ECR
repository and the deploy identity; the trust and permission documents; bundles published to S3 and fetched
back verified, a tampered object refused; the CLI's one-line errors."""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
import pytest
from conftest import BIN, GITHUB_REPO, ROOT, aws_cfg, job_venv, podman_env

REPO = GITHUB_REPO


config = aws_cfg


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mlops-basics-registry"), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


def test_provisioning_plans_applies_and_then_has_nothing_to_do(aws):
    from mlops_basics.aws import client
    from mlops_basics.registries import deploy_policy, provision, trust_policy
    cfg = config("bucket=prov-test", "ecr.repository=prov-api", "role_name=prov-deploy")
    plan = provision(cfg, dry_run=True)
    assert len(plan) == 10 and "create the bucket" in str(plan[0])
    s3 = client("s3", cfg)
    assert "prov-test" not in [b["Name"] for b in s3.list_buckets()["Buckets"]], "a dry run changed something"
    assert [str(c) for c in provision(cfg)] == [str(c) for c in plan]
    assert provision(cfg) == [] and provision(cfg, dry_run=True) == []
    assert s3.get_bucket_versioning(Bucket="prov-test")["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket="prov-test")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket="prov-test")["PublicAccessBlockConfiguration"].values())
    life = s3.get_bucket_lifecycle_configuration(Bucket="prov-test")["Rules"][0]
    assert life["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    ecr = client("ecr", cfg)
    repo = ecr.describe_repositories(repositoryNames=["prov-api"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"]
    keep = json.loads(ecr.get_lifecycle_policy(repositoryName="prov-api")["lifecyclePolicyText"])
    assert keep["rules"][0]["selection"]["countNumber"] == 20
    iam, account = client("iam", cfg), "123456789012"
    assert iam.get_role(RoleName="prov-deploy")["Role"]["AssumeRolePolicyDocument"] == trust_policy(cfg, account)
    assert iam.get_role_policy(RoleName="prov-deploy", PolicyName="deploy")["PolicyDocument"] == deploy_policy(cfg, account)


def test_settings_changed_by_hand_are_put_back(aws):
    from mlops_basics.aws import client
    from mlops_basics.registries import provision
    cfg = config("bucket=drift-test", "ecr.repository=drift-api", "role_name=drift-deploy")
    provision(cfg)
    client("ecr", cfg).put_image_tag_mutability(repositoryName="drift-api", imageTagMutability="MUTABLE")
    client("s3", cfg).put_bucket_versioning(Bucket="drift-test", VersioningConfiguration={"Status": "Suspended"})
    client("iam", cfg).update_assume_role_policy(RoleName="drift-deploy", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))
    fixed = [c.what for c in provision(cfg)]
    assert fixed == ["keep every version of every object", "make tags immutable", "update who may assume it"]
    assert provision(cfg) == []


def test_only_this_repositorys_production_environment_may_assume_the_role():
    from mlops_basics.registries import GITHUB_OIDC, trust_policy, trusts
    trust = trust_policy(config(), "123456789012")
    tok = lambda sub, **kw: {"iss": GITHUB_OIDC, "aud": "sts.amazonaws.com", "sub": sub, **kw}
    assert trusts(trust, tok(f"repo:{REPO}:environment:production"))
    for sub in (f"repo:{REPO}:environment:staging", f"repo:{REPO}:ref:refs/heads/main", f"repo:{REPO}:pull_request",
                "repo:someone/mlops-basics:environment:production", f"repo:{REPO}x:environment:production"):
        assert not trusts(trust, tok(sub)), sub
    assert not trusts(trust, tok(f"repo:{REPO}:environment:production", aud="other"))
    assert not trusts(trust, tok(f"repo:{REPO}:environment:production", iss="token.example.com"))
    with pytest.raises(Exception, match="github.repository"):
        trust_policy(config("github.repository=OWNER/REPO"), "123456789012")


def test_the_deploy_role_may_do_only_what_the_deploy_job_does():
    from mlops_basics.registries import allows, deploy_policy
    cfg, acct = config("region=eu-west-1"), "123456789012"
    pol = deploy_policy(cfg, acct)
    actions = {a for s in pol["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
                       "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage",
                       "ecr:DescribeImages", "s3:GetObject", "s3:PutObject", "s3:ListBucket", "iam:PassRole",
                       *(f"lambda:{a}" for a in ("GetFunction", "CreateFunction", "UpdateFunctionCode",
                                                 "UpdateFunctionConfiguration", "PublishVersion", "ListVersionsByFunction",
                                                 "GetAlias", "CreateAlias", "UpdateAlias", "GetFunctionUrlConfig",
                                                 "CreateFunctionUrlConfig", "UpdateFunctionUrlConfig", "AddPermission",
                                                 "PutFunctionConcurrency", "DeleteFunctionConcurrency", "InvokeFunction"))}
    assert not any("*" in a for a in actions)
    repo = f"arn:aws:ecr:eu-west-1:{acct}:repository/mlops-basics-api"
    fn = f"arn:aws:lambda:eu-west-1:{acct}:function:mlops-basics-api"
    allowed = [("ecr:PutImage", repo), ("s3:PutObject", "arn:aws:s3:::mlops-basics-artifacts/models/v1/model.onnx"),
               ("s3:GetObject", "arn:aws:s3:::mlops-basics-artifacts/dvc/files/md5/ab"), ("lambda:UpdateFunctionCode", fn),
               ("ecr:GetAuthorizationToken", "*")]
    denied = [("ecr:PutImage", repo.replace("mlops-basics-api", "other")), ("ecr:DeleteRepository", repo),
              ("s3:DeleteObject", "arn:aws:s3:::mlops-basics-artifacts/models/v1/model.onnx"),
              ("s3:PutObject", "arn:aws:s3:::mlops-basics-artifacts/elsewhere/x"),
              ("s3:PutObject", "arn:aws:s3:::another-bucket/models/x"), ("lambda:UpdateFunctionCode", fn + "-other"),
              ("lambda:DeleteFunction", fn), ("iam:PassRole", "*"), ("ecr:PutImage", repo.replace("eu-west-1", "us-east-1"))]
    assert all(allows(pol, a, r) for a, r in allowed)
    assert not any(allows(pol, a, r) for a, r in denied)


def test_a_bundle_is_published_with_checksums_and_fetched_back_verified(aws, bundle, tmp_path):
    from mlops_basics.aws import client
    from mlops_basics.core import MlopsBasicsError
    from mlops_basics.registries import fetch_bundle, provision, publish_bundle
    cfg = config("bucket=models-test", "ecr.repository=models-api", "role_name=models-deploy")
    provision(cfg)
    manifest = json.loads((bundle / "manifest.json").read_text())
    r = publish_bundle(bundle, cfg)
    assert r["version"] == manifest["version"] and r["uri"] == f"s3://models-test/models/{manifest['version']}/"
    s3 = client("s3", cfg)
    for name, f in manifest["files"].items():  # S3 holds the SHA-256 the manifest records
        head = s3.head_object(Bucket="models-test", Key=f"models/{manifest['version']}/{name}", ChecksumMode="ENABLED")
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == f["sha256"]
    assert fetch_bundle(tmp_path / "latest", cfg)["version"] == manifest["version"]
    assert fetch_bundle(tmp_path / "byversion", cfg, manifest["version"])["version"] == manifest["version"]
    for name in manifest["files"]:
        assert (tmp_path / "latest" / name).read_bytes() == (bundle / name).read_bytes()
    s3.put_object(Bucket="models-test", Key=f"models/{manifest['version']}/model.onnx", Body=b"not a model")
    with pytest.raises(MlopsBasicsError, match="is damaged: model.onnx"):
        fetch_bundle(tmp_path / "tampered", cfg)
    assert not (tmp_path / "tampered").exists() and not (tmp_path / "tampered.partial").exists()
    with pytest.raises(MlopsBasicsError, match="no bundle 000000000000"):
        fetch_bundle(tmp_path / "missing", cfg, "000000000000")


def test_the_cli_provisions_publishes_and_fetches_and_errors_in_one_line(aws, bundle, tmp_path):
    over = [f"github.repository={REPO}", "bucket=cli-test", "ecr.repository=cli-api", "role_name=cli-deploy"]
    r = cli("provision", "--dry-run", *over)  # 9 or 10: GitHub's OIDC provider is one per account (an earlier test made it)
    n = r.stdout.count("plan: ")
    assert r.returncode == 0 and n in (9, 10) and "plan: s3://cli-test: create the bucket" in r.stdout, r.stderr
    r = cli("provision", *over)
    assert r.returncode == 0 and f"changed {n} setting(s)" in r.stdout
    r = cli("provision", *over)
    assert r.returncode == 0 and r.stdout.strip() == "up to date: nothing to change"
    r = cli("fetch-bundle", tmp_path / "none", *over[1:2])
    assert r.returncode == 2 and "nothing was published" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("publish-bundle", bundle, *over)
    assert r.returncode == 0 and "published bundle" in r.stdout, r.stderr
    r = cli("fetch-bundle", tmp_path / "got", *over)
    assert r.returncode == 0 and (tmp_path / "got" / "manifest.json").is_file(), r.stderr
    for bad in (["provision", "github.repository=OWNER/REPO"], ["publish-bundle", tmp_path / "no-bundle", *over],
                ["provision", "no_such_key=1"]):
        r = cli(*bad)
        assert r.returncode == 2 and r.stderr.startswith("mlops-basics-registry: error:") and "Traceback" not in r.stderr, r.stderr



def manifest(layer: bytes) -> bytes:
    "A single-image manifest naming one layer (ECR's API keeps manifests, not layers)."
    blob = lambda b: {"size": len(b), "digest": "sha256:" + hashlib.sha256(b).hexdigest()}
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **blob(b"{}")},
                       "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **blob(layer)}]}).encode()


def test_ecr_reports_the_pushed_digest_and_keeps_tags_immutable(aws):
    from mlops_basics.aws import client, record_image
    from mlops_basics.ecr_images import image_details
    from mlops_basics.registries import provision
    cfg = config("ecr.repository=metadata-test")
    provision(cfg)
    one, two = manifest(b"layer one"), manifest(b"layer two")
    digest = record_image(cfg, "c0ffee-v1", one)
    assert digest == "sha256:" + hashlib.sha256(one).hexdigest()
    seen = image_details(cfg, "c0ffee-v1")
    assert seen["digest"] == digest and seen["tags"] == ["c0ffee-v1"]
    assert seen["media_type"] == "application/vnd.docker.distribution.manifest.v2+json" and seen["pushed_at"]
    assert record_image(cfg, "c0ffee-v1", one) == digest  # the same push again: nothing changes
    record_image(cfg, "c0ffee-v1", two)  # other bytes under a taken tag: ECR keeps the first
    assert image_details(cfg, "c0ffee-v1")["digest"] == digest
    assert record_image(cfg, "beef-v2", one) == digest  # a second tag for the same image
    assert set(image_details(cfg, "beef-v2")["tags"]) == {"c0ffee-v1", "beef-v2"}
    repo = client("ecr", cfg).describe_repositories(repositoryNames=["metadata-test"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"]
    with pytest.raises(Exception, match="ImageNotFound"):
        image_details(cfg, "never-pushed")


@pytest.mark.containers
@pytest.mark.timeout(900)
def test_the_image_goes_to_a_real_registry_with_an_ecr_token_and_comes_back_by_digest(aws, bundle, tmp_path, monkeypatch):
    "moto's ECR API hands out the token; a real registry process (docker-registry) holds the bytes."
    from mlops_basics.aws import client, local_registry, record_image
    from mlops_basics.core import MlopsBasicsError
    from mlops_basics.deploy_checks import smoke_image
    from mlops_basics.ecr_images import ecr_login, push_image
    from mlops_basics.registries import provision
    env = podman_env(registry=True)
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")  # this test's logins only (podman and skopeo read it)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = config()
    provision(cfg)  # the ECR repository: push_image checks the digest with ECR's API
    user, password = base64.b64decode(client("ecr", cfg).get_authorization_token()["authorizationData"][0]
                                      ["authorizationToken"]).decode().split(":", 1)
    local = f"localhost/mlops-basics-api:reg-{os.getpid()}"
    r = subprocess.run(["bash", str(ROOT / "docker/build-image"), str(bundle), local], capture_output=True, text=True,
                       env={**env, "PYTHON": str(BIN / "python")}, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    version = json.loads((bundle / "manifest.json").read_text())["version"]
    try:
        with local_registry(user, "not-the-token", tmp_path / "wrong") as host:  # a registry that refuses the token
            with pytest.raises(MlopsBasicsError, match="login"):
                ecr_login(config(f"ecr.registry={host}"))
        with local_registry(user, password, tmp_path / "registry") as host:
            cfg = config(f"ecr.registry={host}")
            pushed = push_image(local, cfg, "a" * 40, version)
            assert pushed["ref"] == f"{host}/mlops-basics-api:{'a' * 12}-{version}"
            assert pushed["digest"].startswith("sha256:") and len(pushed["digest"]) == 71
            assert pushed["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"  # one image, no index
            assert pushed["ecr"]["digest"] == pushed["digest"] and pushed["ecr"]["tags"] == [f"{'a' * 12}-{version}"]
            assert client("ecr", cfg).describe_images(repositoryName="mlops-basics-api", imageIds=[{"imageDigest": pushed["digest"]}])
            record_image(cfg, f"{'b' * 12}-{version}", manifest(b"someone else's"))  # the tag is taken by other bytes
            with pytest.raises(MlopsBasicsError, match="tags are immutable"):
                push_image(local, cfg, "b" * 40, version)
            assert subprocess.run(["podman", "login", "--get-login", host], capture_output=True, env=env).returncode != 0
            subprocess.run(["podman", "rmi", "-f", pushed["ref"], local], capture_output=True, env=env)
            ecr_login(cfg)
            pull = subprocess.run(["podman", "pull", "--tls-verify=false", pushed["by_digest"]], capture_output=True, text=True, env=env)
            assert pull.returncode == 0, pull.stderr
            assert smoke_image(pushed["by_digest"], bundle)["model_version"] == version
            assert json.loads((tmp_path / "auth.json").read_text())["auths"].get(host), "ecr_login stored no login"
            subprocess.run(["podman", "logout", host], capture_output=True, env=env)
            # .ci/publish as the deploy job runs it: the bundle to S3, the image to the registry, through the CLI
            r = cli("publish-bundle", bundle, f"github.repository={REPO}", "bucket=publish-test")
            assert r.returncode == 2 and "AWS said no" in r.stderr and "Traceback" not in r.stderr  # no bucket yet
            provision(config("bucket=publish-test"))
            subprocess.run(["podman", "tag", pushed["by_digest"], local], capture_output=True, env=env)
            r = subprocess.run(["bash", str(ROOT / ".ci/publish"), str(bundle), local], capture_output=True, text=True, timeout=600,
                               env={**env, "MLOPS_BASICS_REGISTRY": host, "MLOPS_BASICS_GITHUB_REPOSITORY": REPO,
                                    "MLOPS_BASICS_S3_BUCKET": "publish-test", "MLOPS_BASICS_VENV": str(job_venv(tmp_path))})
            assert r.returncode == 0 and "published bundle" in r.stdout and "digest sha256:" in r.stdout and "ECR's API agrees" in r.stdout, r.stdout + r.stderr
            scan_for_secrets(password, env, local, [tmp_path, ROOT / "nbs"], r.stdout + r.stderr)
    finally:  # the local image and every copy pulled or tagged from the test's registries
        refs = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True,
                              env=env).stdout.split()
        mine = [r for r in refs if r.startswith("127.0.0.1:") and "/mlops-basics-api:" in r and r.endswith(f"-{version}")]
        subprocess.run(["podman", "rmi", "-f", local, *mine], capture_output=True, env=env)


def scan_for_secrets(token: str, env: dict, image: str, folders: list, log: str) -> None:
    "After the whole flow: the ECR token (plain or base64, as auth files keep it) and AWS key ids are nowhere."
    forms = [token.encode(), base64.b64encode(f"AWS:{token}".encode())]
    key_id = re.compile(rb"(?<![A-Z0-9])(AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
    def clean(blob: bytes, where: str):
        assert not any(f in blob for f in forms), f"the registry token is in {where}"
        assert not key_id.search(blob), f"an AWS access key id is in {where}"
    clean(log.encode(), "the CLI's output")
    for folder in folders:  # the registry's storage and password file, the notebooks with their outputs
        for f in Path(folder).rglob("*"):
            if f.is_file() and f.stat().st_size < 200e6:
                clean(f.read_bytes(), str(f))
    auth = Path(env["REGISTRY_AUTH_FILE"])
    assert auth.is_file(), "the logins did not use the test's auth file"
    clean(auth.read_bytes(), "the engine's auth file after the flow (push-image logs out)")
    tar = Path(tempfile.mkdtemp()) / "image.tar"
    try:  # every layer of the image
        subprocess.run(["podman", "save", "-o", str(tar), image], check=True, capture_output=True, env=env)
        clean(tar.read_bytes(), f"the image {image}")
    finally:
        shutil.rmtree(tar.parent, ignore_errors=True)
