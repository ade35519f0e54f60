"""The Python port of fleetup's templates, filters and lock (fleetup_templates.py,
fleetup_playbook.py) against
the Rust's own test cases (src/template/tests.rs, src/template/docker.rs, src/lock.rs).

  PYTHONPATH=tests/bench/peers ~/.cache/fleetup-bench/venv/bin/python -m unittest \
    tests/bench/peers/test_fleetup_playbook.py
"""

import json
import os
import subprocess
import tempfile
import unittest

import fleetup_playbook as fp
import fleetup_templates as ft


class Templates(unittest.TestCase):
    def setUp(self):
        self.t = ft.Templates()

    def render(self, source, values):
        return self.t.render(source, ft.Scope(dict(values), self.t))

    def eval(self, expression, values):
        return self.t.eval(expression, ft.Scope(dict(values), self.t))

    def test_quote_is_shell_words(self):
        v = {"path": "/opt/simple login", "evil": "x; touch /tmp/pwned"}
        self.assertEqual(self.render("cd {{ path | quote }} && echo {{ evil | quote }}", v),
                         "cd '/opt/simple login' && echo 'x; touch /tmp/pwned'")
        # Where shell-words and Python's shlex.quote differ.
        self.assertEqual(ft.shell_quote("a,b{c}!"), "a,b{c}!")
        self.assertEqual(ft.shell_quote("B=2"), "'B=2'")
        self.assertEqual(ft.shell_quote(""), "''")
        self.assertEqual(ft.shell_quote("a\nb"), "'a\nb'")
        self.assertEqual(ft.shell_quote("it's\n"), "'it'\\''s\n'")
        self.assertEqual(self.render("{{ x | quote }} {{ y | quote }}", {"x": True, "y": None}), "true none")

    def test_undefined_is_an_error(self):
        with self.assertRaises(ft.TemplateError):
            self.render("{{ missing }}", {})
        with self.assertRaises(ft.TemplateError):
            self.eval("missing == 1", {})
        self.assertEqual(self.render("{{ y | default('d') }}", {}), "d")

    def test_variables_may_be_templates(self):
        v = {"app": "/opt/sl", "backups": "{{ app }}/backups", "dump": "{{ backups }}/db.sql.gz",
             "list": ["{{ app }}"]}
        self.assertEqual(self.render("{{ dump }} {{ list[0] }}", v), "/opt/sl/backups/db.sql.gz /opt/sl")
        with self.assertRaises(ft.TemplateError):
            self.render("{{ a }}", {"a": "{{ b }}", "b": "{{ a }}"})
        with self.assertRaises(ft.TemplateError):
            self.render("{{ a }}", {"a": "{{ nope }}"})

    def test_one_expression_keeps_its_type(self):
        v = {"found": {"stdout": '{"containers": [{"Name": "/sl-app"}], "size": 3}'},
             "facts": "{{ found.stdout | from_json }}", "app": "{{ facts.containers[0].Name }}",
             "bigger": "{{ facts.size + 1 }}"}
        self.assertEqual(self.render("{{ app }} {{ bigger }}", v), "/sl-app 4")
        self.assertTrue(self.eval("facts.size == 3 and bigger == 4", v))

    def test_a_rendered_variable_is_never_rendered_again(self):
        v = {"fmt": "docker inspect --format '{% raw %}{{.Name}}{% endraw %}' {{ name }}",
             "name": "sl-app", "both": "{{ fmt }}; {{ fmt }}"}
        self.assertEqual(
            self.render("{{ both }} && {{ fmt }}", v),
            "docker inspect --format '{{.Name}}' sl-app; docker inspect --format '{{.Name}}' sl-app"
            " && docker inspect --format '{{.Name}}' sl-app")

    def test_a_register_drops_what_depends_on_it(self):
        scope = ft.Scope({"found": {"stdout": "1"}, "n": "{{ found.stdout | int + 1 }}", "k": "{{ 7 }}"}, self.t)
        self.assertEqual(self.t.render("{{ n }} {{ k }}", scope), "2 7")
        scope.register("found", ft.registered("41\n", "", 0))
        self.assertEqual(self.t.render("{{ n }} {{ k }}", scope), "42 7")

    def test_docker_filters_in_templates(self):
        v = {"c": {"Name": "/sl-app", "Config": {"Env": ["A=1", "B=2"], "Cmd": ["gunicorn"]},
                   "HostConfig": {"PortBindings": {"7777/tcp": [{"HostIp": "127.0.0.1", "HostPort": "7777"}]}}},
             "i": {"Config": {"Env": ["A=1"], "Cmd": ["gunicorn"]}}}
        self.assertEqual(
            self.render("{{ c | docker_run_options(i) | map('quote') | join(' ') }}|"
                        "{{ c | docker_run_command(i) | length }}|{{ c | docker_published(7777) }}", v),
            "--name sl-app -p 127.0.0.1:7777:7777 -e 'B=2'|0|127.0.0.1:7777")

    def test_versions(self):
        v = {"a": "v4.66.1", "b": "4.66.1", "c": "latest", "d": 4}
        self.assertTrue(self.eval("a is pinned_version and b is pinned_version", v))
        self.assertFalse(self.eval("c is pinned_version or d is pinned_version", v))
        self.assertEqual(ft.compare_versions("v4.10.0", "v4.9.9"), 1)
        self.assertEqual(ft.compare_versions("4.66", "v4.66.0"), 0)
        self.assertIsNone(ft.compare_versions("latest", "v4.66.0"))
        self.assertTrue(self.eval("a is version('4.48.0', '>=') and not (a is version('4.67', '>'))", v))
        self.assertTrue(self.eval("['POSTGRES_USER=x'] | select('startingwith', 'POSTGRES_USER=') | first == 'POSTGRES_USER=x'", v))

    def test_a_command_held_in_a_variable_is_quoted_word_by_word(self):
        source = "{{ c | split | map('quote') | join(' ') }} up -d"
        self.assertEqual(self.render(source, {"c": "docker compose"}), "docker compose up -d")
        self.assertEqual(self.render(source, {"c": "docker compose; touch /tmp/pwned"}),
                         "docker 'compose;' touch /tmp/pwned up -d")


APP_IMAGE = {"Config": {
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.10.13", "LANG=C.UTF-8"],
    "Cmd": ["gunicorn", "wsgi:app", "-b", "0.0.0.0:7777"], "Entrypoint": None, "WorkingDir": "/code",
    "Labels": {"org.opencontainers.image.source": "https://github.com/simple-login/app"}}}


def readme_sl_email():
    return {
        "Name": "/sl-email",
        "Config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHON_VERSION=3.10.13", "LANG=C.UTF-8", "EXTRA=1"],
            "Cmd": ["python", "email_handler.py"], "Entrypoint": None, "WorkingDir": "/code",
            "Labels": {"org.opencontainers.image.source": "https://github.com/simple-login/app", "owner": "ops"}},
        "HostConfig": {
            "Binds": ["/root/sl:/sl", "/root/simplelogin.env:/code/.env"], "NetworkMode": "sl-network",
            "PortBindings": {"20381/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20381"}]},
            "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}}


class Docker(unittest.TestCase):
    def test_a_readme_container_is_re_created_with_its_own_flags(self):
        self.assertEqual(ft.docker_run_options(readme_sl_email(), APP_IMAGE), [
            "--name", "sl-email", "--restart", "always", "--network", "sl-network",
            "-p", "127.0.0.1:20381:20381", "-v", "/root/sl:/sl", "-v", "/root/simplelogin.env:/code/.env",
            "-e", "EXTRA=1", "-l", "owner=ops"])
        self.assertEqual(ft.docker_run_command(readme_sl_email(), APP_IMAGE), ["python", "email_handler.py"])

    def test_the_images_default_command_is_left_to_the_new_image(self):
        app = readme_sl_email()
        app["Config"]["Cmd"] = ["gunicorn", "wsgi:app", "-b", "0.0.0.0:7777"]
        self.assertEqual(ft.docker_run_command(app, APP_IMAGE), [])

    def test_an_own_entrypoint_is_kept(self):
        c = readme_sl_email()
        c["Config"]["Entrypoint"] = ["/bin/sh", "-c"]
        c["Config"]["Cmd"] = ["python email_handler.py"]
        self.assertEqual(ft.docker_run_options(c, APP_IMAGE)[-2:], ["--entrypoint", "/bin/sh"])
        self.assertEqual(ft.docker_run_command(c, APP_IMAGE), ["-c", "python email_handler.py"])

    def test_what_re_creating_would_lose_is_named_by_its_flag(self):
        self.assertEqual(ft.docker_not_carried(readme_sl_email(), APP_IMAGE), [])
        c = readme_sl_email()
        c["HostConfig"].update({
            "Mounts": [{"Type": "bind", "Source": "/root/sl.env", "Target": "/code/.env"}],
            "Links": ["/sl-db:/sl-app/db"], "Memory": 536870912, "CapAdd": ["CAP_NET_ADMIN"],
            "SecurityOpt": ['seccomp={"defaultAction":"SCMP_ACT_ERRNO"}'],
            "DeviceRequests": [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]})
        self.assertEqual(ft.docker_not_carried(c, APP_IMAGE),
                         ["--mount /code/.env", "--link", "--security-opt seccomp", "--gpus"])

    def test_host_settings_come_back_as_the_flags_that_set_them(self):
        # The same case as host_config.rs's each_setting_comes_back_as_the_flag_that_set_it.
        c = readme_sl_email()
        c["HostConfig"].update({
            "VolumesFrom": ["sl-data:ro"], "ExtraHosts": ["db.internal:10.0.0.5"],
            "CapAdd": ["CAP_NET_ADMIN"], "CapDrop": ["CAP_MKNOD"], "Dns": ["10.0.0.53"],
            "DnsSearch": ["internal"], "DnsOptions": ["ndots:2"],
            "SecurityOpt": ["no-new-privileges:true", "seccomp=unconfined"],
            "GroupAdd": ["mail"], "Privileged": True, "Init": True, "ReadonlyRootfs": True,
            "Memory": 536870912, "MemorySwap": -1, "MemoryReservation": 268435456,
            "CpuShares": 512, "PidsLimit": 200, "OomScoreAdj": -500, "NanoCpus": 1500000000,
            "ShmSize": 134217728, "Tmpfs": {"/run": "size=64m,mode=1777", "/tmp": ""},
            "Sysctls": {"net.core.somaxconn": "1024"}, "StorageOpt": {"size": "10G"},
            "DeviceCgroupRules": ["c 10:229 rwm"],
            "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}],
            "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
            "CpusetCpus": "0-1", "PidMode": "host", "CpuQuota": 50000, "CpuPeriod": 100000,
            "PublishAllPorts": True, "OomKillDisable": True})
        c["Config"].update({"User": "1000:1000", "StopSignal": "SIGINT", "StopTimeout": 30,
                            "Hostname": "mail-app"})
        c["Id"] = "4f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
        options = ft.docker_run_options(c, APP_IMAGE)
        start = options.index("--volumes-from")
        self.assertEqual(" ".join(options[start:]), " ".join([
            "--volumes-from sl-data:ro", "--add-host db.internal:10.0.0.5",
            "--cap-add CAP_NET_ADMIN", "--cap-drop CAP_MKNOD", "--dns 10.0.0.53",
            "--dns-search internal", "--dns-option ndots:2",
            "--security-opt no-new-privileges:true", "--security-opt seccomp=unconfined",
            "--group-add mail", "--device-cgroup-rule c 10:229 rwm", "--cpuset-cpus 0-1", "--pid host", "--memory 536870912",
            "--memory-reservation 268435456", "--cpu-shares 512", "--cpu-quota 50000",
            "--cpu-period 100000", "--pids-limit 200", "--oom-score-adj -500", "--memory-swap -1",
            "--cpus 1.5", "--shm-size 134217728", "--tmpfs /run:size=64m,mode=1777", "--tmpfs /tmp",
            "--sysctl net.core.somaxconn=1024", "--storage-opt size=10G", "--device /dev/fuse:/dev/fuse:rwm",
            "--ulimit nofile=1024:2048", "--user 1000:1000", "--stop-signal SIGINT",
            "--hostname mail-app", "--stop-timeout 30", "--privileged", "--init", "--read-only",
            "--publish-all", "--oom-kill-disable"]))
        self.assertEqual(ft.docker_not_carried(c, APP_IMAGE), [])

    def test_an_env_file_holds_the_own_variables_it_can(self):
        # The same case as docker.rs's an_env_file_holds_the_own_variables_it_can_and_...
        c = readme_sl_email()
        c["Config"]["Env"] += ["DB_URI=postgresql://sl:s3cret@sl-db:5432/simplelogin",
                               "MOTD=line one\nline two"]
        path = "/var/lib/fleetup/upgrade-in-progress/sl-email.env"
        self.assertEqual(ft.docker_env_file(c, APP_IMAGE),
                         ["EXTRA=1", "DB_URI=postgresql://sl:s3cret@sl-db:5432/simplelogin"])
        options = ft.docker_run_options(c, APP_IMAGE, path)
        pairs = [options[i:i + 2] for i in range(len(options) - 1) if options[i] in ("-e", "--env-file")]
        self.assertEqual(pairs, [["--env-file", path], ["-e", "MOTD=line one\nline two"]])
        self.assertEqual(ft.docker_run_context(c, APP_IMAGE, path)[-4:],
                         ["-e", "MOTD=line one\nline two", "--network", "sl-network"])
        for entry in ["A=1\n2", "A=1\r", "#A=1", "A B=1", "=1", "A=" + "x" * (64 << 10)]:
            self.assertFalse(ft._fits_env_file(entry), entry)

    def test_an_own_health_check_and_exposed_ports(self):
        # The case of host_config.rs's an_own_health_check_and_exposed_ports_come_back_as_flags.
        image = {"Config": {"ExposedPorts": {"7777/tcp": {}}, "Healthcheck": None}}
        c = {"Config": {"ExposedPorts": {"7777/tcp": {}, "8080/tcp": {}},
                        "Healthcheck": {"Test": ["CMD-SHELL", "curl -fsS localhost:7777/health"],
                                        "Interval": 30000000000, "Timeout": 1500000000,
                                        "StartPeriod": 0, "Retries": 3}}}
        args = []
        ft._host_config_flags(c, image, args)
        self.assertEqual(args, ["--expose", "8080/tcp", "--health-cmd", "curl -fsS localhost:7777/health",
                                "--health-interval", "30s", "--health-timeout", "1500ms",
                                "--health-retries", "3"])
        c["Config"]["Healthcheck"] = {"Test": ["CMD", "curl", "-f", "localhost"]}
        self.assertEqual(ft.docker_not_carried(c, image), ["--health-cmd (exec form)"])

    def test_networks_beyond_the_own_one(self):
        # The cases of networks.rs.
        short_id = "4f9c2d1e8a7b"
        c = {"Id": short_id + "6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d", "Name": "/sl-app",
             "HostConfig": {"NetworkMode": "sl-network"},
             "NetworkSettings": {"Networks": {
                 "sl-network": {"IPAMConfig": {"IPv4Address": "172.18.0.50"}, "Aliases": ["app", short_id]},
                 "proxy": {"IPAMConfig": None, "Aliases": [short_id, "sl-app", "simplelogin"]}}}}
        args = []
        ft._network_run_flags(c, args)
        self.assertEqual(args, ["--network-alias", "app", "--ip", "172.18.0.50"])
        self.assertEqual(ft.docker_network_connects(c), [["--alias", "simplelogin", "proxy"]])
        bare = {"HostConfig": {"NetworkMode": "default"},
                "NetworkSettings": {"Networks": {"bridge": {"IPAMConfig": None, "Aliases": None}}}}
        self.assertEqual(ft.docker_network_connects(bare), [])

    def test_ports_restart_policies_and_networks(self):
        c = {"Name": "/x", "HostConfig": {
            "NetworkMode": "default",
            "PortBindings": {"53/udp": [{"HostIp": "", "HostPort": "5353"}], "80/tcp": [{"HostIp": "", "HostPort": ""}]},
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}}
        self.assertEqual(ft.docker_run_options(c, {}),
                         ["--name", "x", "--restart", "on-failure:3", "-p", "5353:53/udp", "-p", "80"])

    def test_a_one_off_container_sees_the_apps_mounts_env_and_network(self):
        c = readme_sl_email()
        c["Mounts"] = [
            {"Type": "bind", "Source": "/root/sl", "Destination": "/sl", "RW": True},
            {"Type": "volume", "Name": "sl_pgp", "Source": "/var/lib/docker/volumes/sl_pgp/_data",
             "Destination": "/sl/pgp", "RW": True},
            {"Type": "bind", "Source": "/root/dkim.key", "Destination": "/dkim.key", "RW": False}]
        self.assertEqual(ft.docker_run_context(c, APP_IMAGE), [
            "-v", "/root/sl:/sl", "-v", "sl_pgp:/sl/pgp", "-v", "/root/dkim.key:/dkim.key:ro",
            "-e", "EXTRA=1", "--network", "sl-network"])

    def test_by_name_and_labels(self):
        by = ft.docker_by_name([{"Name": "/sl-db"}, {"Name": "/sl-app", "Id": "x"}])
        self.assertEqual(by["sl-app"]["Id"], "x")
        self.assertEqual(ft.docker_by_name(None), {})
        by = ft.docker_by_name([{"Name": "/sl-app", "Config": {"Labels": {"svc": "app"}}},
                                {"Name": "/sl-db", "Config": {"Labels": None}}])
        self.assertEqual(ft.docker_label(by, "svc"), {"sl-app": "app"})

    def test_published(self):
        self.assertEqual(ft.docker_published(readme_sl_email(), "20381"), "127.0.0.1:20381")
        self.assertIsNone(ft.docker_published(readme_sl_email(), "7777"))
        every = {"HostConfig": {"PortBindings": {"7777/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}}}
        self.assertEqual(ft.docker_published(every, 7777), "127.0.0.1:8080")


def sh(command):
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr


class Lock(unittest.TestCase):
    def test_commands_run_in_a_shell(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = os.path.join(tmp, "it's locks")
            me, other = fp.owner("r1", 1, 2), fp.owner("r2", 3, 4)
            self.assertEqual(sh(fp.take_command(d, me))[1], "taken\n")
            rc, out, _ = sh(fp.take_command(d, other))
            self.assertTrue(out.startswith("held "), out)
            self.assertEqual(out.split("\n")[1], me)
            # Someone else's lock stays; the audit line is appended anyway.
            sh(fp.release_command(d, other, "line one"))
            self.assertTrue(os.path.isdir(os.path.join(d, "lock")))
            sh(fp.release_command(d, me, "line 'two'; $(x)"))
            self.assertFalse(os.path.exists(os.path.join(d, "lock")))
            with open(os.path.join(d, "audit.log")) as f:
                self.assertEqual(f.read(), "line one\nline 'two'; $(x)\n")

    def test_the_first_step_runs_only_under_the_lock(self):
        with tempfile.TemporaryDirectory() as tmp:
            me, other = fp.owner("r1", 1, 2), fp.owner("r2", 3, 4)
            step = "set -e\necho ran > " + ft.shell_quote(tmp + "/ran") + "\necho head=x"
            self.assertEqual(sh(fp.with_lock_taken(fp.take_command(tmp, me), step))[:2], (0, "head=x\n"))
            os.remove(tmp + "/ran")
            rc, out, err = sh(fp.with_lock_taken(fp.take_command(tmp, other), step))
            self.assertEqual((rc, out), (fp.LOCK_HELD, ""))
            self.assertTrue(err.startswith("host lock: held "), err)
            self.assertFalse(os.path.exists(tmp + "/ran"))

    def test_the_last_step_releases_only_when_it_succeeded(self):
        with tempfile.TemporaryDirectory() as tmp:
            me = fp.owner("r1", 1, 2)
            sh(fp.take_command(tmp, me))
            release = fp.release_command(tmp, me, "done")
            self.assertEqual(sh(fp.with_release("echo no >&2\nexit 3", release))[0], 3)
            self.assertTrue(os.path.isdir(tmp + "/lock"))
            self.assertFalse(os.path.exists(tmp + "/audit.log"))
            self.assertEqual(sh(fp.with_release("echo at", release))[:2], (0, "at\n"))
            self.assertFalse(os.path.exists(tmp + "/lock"))

    def test_owner_and_audit_lines_are_fleetups(self):
        me = fp.owner("r1", 42, 7)
        self.assertEqual(list(json.loads(me)), ["run_id", "operator", "controller", "pid", "started"])
        self.assertNotIn(" ", me)
        line = fp.audit_line(me, "v4.65.0", "", "rolled back")
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ run=r1 operator=\S+ controller=\S+ "
                               r"from=v4\.65\.0 to=- outcome=rolled_back$")


class ThePlaybook(unittest.TestCase):
    def test_every_template_of_the_shipped_playbook_compiles(self):
        pb = fp.Playbook().compile_all()
        self.assertEqual(len(pb.preflight), 4)
        self.assertEqual(len(pb.steps), 11)
        self.assertEqual(pb.steps[pb.point_of_no_return]["name"], "stop and remove the app containers")


if __name__ == "__main__":
    unittest.main()
