"""fleetup's template language in Python, for the peers of tests/bench/peers.sh (through
fleetup_playbook.py): ported from src/template/ with the same semantics, and tested on
the Rust's own cases (test_fleetup_playbook.py):
- templates (src/template/mod.rs, minijinja): undefined names are errors unless guarded
  by `default` or `is defined`, variables that are templates are rendered when used,
  dependencies first, and a value that is one `{{ expression }}` keeps its type; values
  print as minijinja prints them (`true`, `none`);
- filters and tests: `quote` is shell-words' quoting (not Python's shlex.quote, which
  quotes differently), `bool`, `from_json`, `split`, the `version` and `pinned_version`
  tests, minijinja's `startingwith`/`endingwith`;
- the docker filters (src/template/docker.rs): docker_by_name, docker_label,
  docker_run_options, docker_run_context, docker_run_command, docker_published,
  docker_not_carried, docker_env_file, docker_network_connects (and
  src/template/host_config.rs, src/template/networks.rs);
- registered results (src/engine/verdict.rs): output without its final newlines.
"""

import json
import re

import jinja2
import jinja2.meta

# --- values as minijinja shows them ---------------------------------------------------


def display(value):
    """minijinja's Display of a value: what `{{ x }}` prints and `quote` quotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_debug(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_debug(k)}: {_debug(v)}" for k, v in value.items()) + "}"
    return str(value)


def _debug(value):
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else display(value)


_SPECIAL = set("|&;<>()$`\\\" \t*?[#~=%")


def shell_quote(s):
    """shell_words::quote (the crate fleetup's `quote` filter uses)."""
    if s == "":
        return "''"
    special = newline = single = False
    for c in s:
        if c == "\n":
            newline = special = True
        elif c == "'":
            single = special = True
        elif c in _SPECIAL:
            special = True
    if not special:
        return s
    if newline and not single:
        return f"'{s}'"
    return "'" + s.replace("'", "'\\''") + "'"


def quote(value):
    return shell_quote(display(value))


def to_bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "true", "1", "y")
    return bool(value)


def from_json(text):
    return json.loads(text)


_NUMBER = re.compile(r"\+?[0-9]+")


def compare_versions(a, b):
    """-1, 0 or 1 comparing `v4.65.2` with `4.66`; None when either is not numbers."""

    def parts(v):
        v = str(v).strip()
        if v[:1] in ("v", "V"):
            v = v[1:]
        # Rust's u64 parse: ASCII digits, an optional leading +.
        if not all(_NUMBER.fullmatch(p) for p in v.split(".")):
            return None
        return [int(p) for p in v.split(".")]

    pa, pb = parts(a), parts(b)
    if pa is None or pb is None:
        return None
    n = max(len(pa), len(pb))
    pa, pb = pa + [0] * (n - len(pa)), pb + [0] * (n - len(pb))
    return (pa > pb) - (pa < pb)


_VERSION_OPS = {
    "<": lambda o: o < 0, "lt": lambda o: o < 0,
    "<=": lambda o: o <= 0, "le": lambda o: o <= 0,
    ">": lambda o: o > 0, "gt": lambda o: o > 0,
    ">=": lambda o: o >= 0, "ge": lambda o: o >= 0,
    "==": lambda o: o == 0, "=": lambda o: o == 0, "eq": lambda o: o == 0,
    "!=": lambda o: o != 0, "<>": lambda o: o != 0, "ne": lambda o: o != 0,
}


def version_test(value, other, op="eq"):
    ordering = compare_versions(display(value), other)
    if ordering is None:
        raise ValueError(f"cannot compare versions `{display(value)}` and `{other}`")
    if op not in _VERSION_OPS:
        raise ValueError(f"unknown version comparison `{op}` (use <, <=, >, >=, ==, !=)")
    return _VERSION_OPS[op](ordering)


def pinned_version(value):
    return isinstance(value, str) and compare_versions(value, "0") is not None


# --- the docker filters (src/template/docker.rs) ----------------------------------------


def _at(value, *path):
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _str_at(value, *path):
    v = _at(value, *path)
    return v if isinstance(v, str) else ""


def _strings_at(value, *path):
    v = _at(value, *path)
    return [i for i in v if isinstance(i, str)] if isinstance(v, list) else []


def _own_variables(container, image):
    image_env = _strings_at(image, "Config", "Env")
    return [e for e in _strings_at(container, "Config", "Env") if e not in image_env]


def _fits_env_file(entry):
    # docker/cli's kvfile: lines under 64 KiB, leading spaces dropped, `#` lines skipped,
    # no space in a name.
    name = entry.split("=", 1)[0]
    return (len(entry.encode()) < (64 << 10) - 1 and "\n" not in entry and "\r" not in entry
            and name != "" and not name.startswith("#") and not any(c.isspace() for c in name))


def _own_env(container, image, env_file, args):
    own = _own_variables(container, image)
    filed = [e for e in own if env_file is not None and _fits_env_file(e)]
    if filed:
        args += ["--env-file", env_file]
    for entry in own:
        if entry not in filed:
            args += ["-e", entry]


def docker_env_file(container, image):
    return [e for e in _own_variables(container, image) if _fits_env_file(e)]


def docker_run_options(container, image, env_file=None):
    args = []
    name = _str_at(container, "Name").lstrip("/")
    if name:
        args += ["--name", name]
    policy = _str_at(container, "HostConfig", "RestartPolicy", "Name")
    retries = _at(container, "HostConfig", "RestartPolicy", "MaximumRetryCount")
    retries = retries if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0 else 0
    if policy == "on-failure" and retries > 0:
        args += ["--restart", f"on-failure:{retries}"]
    elif policy not in ("", "no"):
        args += ["--restart", policy]
    network = _str_at(container, "HostConfig", "NetworkMode")
    if network not in ("", "default", "bridge"):
        args += ["--network", network]
    _network_run_flags(container, args)
    bindings = _at(container, "HostConfig", "PortBindings")
    for container_port, hosts in (bindings.items() if isinstance(bindings, dict) else []):
        port = container_port[: -len("/tcp")] if container_port.endswith("/tcp") else container_port
        for host in hosts if isinstance(hosts, list) else []:
            ip, host_port = _str_at(host, "HostIp"), _str_at(host, "HostPort")
            if not ip and not host_port:
                args += ["-p", port]
            elif not ip:
                args += ["-p", f"{host_port}:{port}"]
            else:
                args += ["-p", f"{ip}:{host_port}:{port}"]
    for bind in _strings_at(container, "HostConfig", "Binds"):
        args += ["-v", bind]
    _own_env(container, image, env_file, args)
    own = _at(container, "Config", "Labels")
    if isinstance(own, dict):
        inherited = _at(image, "Config", "Labels")
        for key, value in own.items():
            if isinstance(inherited, dict) and key in inherited and inherited[key] == value:
                continue
            args += ["-l", f"{key}={value if isinstance(value, str) else ''}"]
    _host_config_flags(container, image, args)
    workdir = _str_at(container, "Config", "WorkingDir")
    if workdir and workdir != _str_at(image, "Config", "WorkingDir"):
        args += ["-w", workdir]
    entrypoint = _strings_at(container, "Config", "Entrypoint")
    if entrypoint != _strings_at(image, "Config", "Entrypoint"):
        # `--entrypoint` takes one word; the rest go before the command (run_command).
        args += ["--entrypoint", entrypoint[0] if entrypoint else ""]
    return args


def docker_run_context(container, image, env_file=None):
    args = []
    mounts = container.get("Mounts") if isinstance(container, dict) else None
    for mount in mounts if isinstance(mounts, list) else []:
        source = _str_at(mount, "Name") if _at(mount, "Type") == "volume" else _str_at(mount, "Source")
        target = _str_at(mount, "Destination")
        if not source or not target:
            continue
        suffix = ":ro" if _at(mount, "RW") is False else ""
        args += ["-v", f"{source}:{target}{suffix}"]
    _own_env(container, image, env_file, args)
    network = _str_at(container, "HostConfig", "NetworkMode")
    if network not in ("", "default"):
        args += ["--network", network]
    return args


def docker_run_command(container, image):
    entrypoint = _strings_at(container, "Config", "Entrypoint")
    cmd = _strings_at(container, "Config", "Cmd")
    own_entrypoint = entrypoint != _strings_at(image, "Config", "Entrypoint")
    if not own_entrypoint and cmd == _strings_at(image, "Config", "Cmd"):
        return []
    return (entrypoint[1:] if own_entrypoint else []) + cmd


# src/template/host_config.rs: HostConfig's settings beyond the README's flags, each set
# one given back as the flag that set it; docker's defaults (0, false, null, []) give none.
_HOST_LISTS = [("VolumesFrom", "--volumes-from"), ("ExtraHosts", "--add-host"),
               ("CapAdd", "--cap-add"), ("CapDrop", "--cap-drop"), ("Dns", "--dns"),
               ("DnsSearch", "--dns-search"), ("DnsOptions", "--dns-option"),
               ("SecurityOpt", "--security-opt"), ("GroupAdd", "--group-add"),
               ("DeviceCgroupRules", "--device-cgroup-rule")]
_HOST_SWITCHES = [("Privileged", "--privileged"), ("Init", "--init"), ("ReadonlyRootfs", "--read-only"),
                  ("PublishAllPorts", "--publish-all"), ("OomKillDisable", "--oom-kill-disable")]
_HOST_STRINGS = [("CpusetCpus", "--cpuset-cpus"), ("CpusetMems", "--cpuset-mems"), ("PidMode", "--pid"),
                 ("UTSMode", "--uts"), ("UsernsMode", "--userns"), ("CgroupParent", "--cgroup-parent")]
_HOST_NUMBERS = [("Memory", "--memory"), ("MemoryReservation", "--memory-reservation"),
                 ("CpuShares", "--cpu-shares"), ("CpuQuota", "--cpu-quota"), ("CpuPeriod", "--cpu-period"),
                 ("BlkioWeight", "--blkio-weight"), ("PidsLimit", "--pids-limit"),
                 ("OomScoreAdj", "--oom-score-adj")]
_DEFAULT_SHM_SIZE = 64 << 20


def _host_number(container, key):
    value = _at(container, "HostConfig", key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _host_list(container, key):
    value = _at(container, "HostConfig", key)
    return value if isinstance(value, list) else []


def _host_map(container, key):
    value = _at(container, "HostConfig", key)
    return value if isinstance(value, dict) else {}


def _carried_list_item(key, item):
    # A seccomp profile is kept as the file's JSON where the flag names the file.
    if key == "SecurityOpt" and item.split("=", 1)[0] == "seccomp" and "=" in item:
        return item.split("=", 1)[1] in ("unconfined", "builtin")
    return True


def _cpus(nano):
    whole, fraction = divmod(nano, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def _host_config_flags(container, image, args):
    for key, flag in _HOST_LISTS:
        for item in _host_list(container, key):
            if isinstance(item, str) and _carried_list_item(key, item):
                args += [flag, item]
    for key, flag in _HOST_STRINGS:
        if _str_at(container, "HostConfig", key):
            args += [flag, _str_at(container, "HostConfig", key)]
    for key, flag in _HOST_NUMBERS:
        if _host_number(container, key):
            args += [flag, str(_host_number(container, key))]
    memory, swap = _host_number(container, "Memory"), _host_number(container, "MemorySwap")
    if memory > 0 and swap not in (0, 2 * memory):
        args += ["--memory-swap", str(swap)]
    if _host_number(container, "NanoCpus") > 0:
        args += ["--cpus", _cpus(_host_number(container, "NanoCpus"))]
    if _host_number(container, "ShmSize") not in (0, _DEFAULT_SHM_SIZE):
        args += ["--shm-size", str(_host_number(container, "ShmSize"))]
    for path, options in _host_map(container, "Tmpfs").items():
        options = options if isinstance(options, str) else ""
        args += ["--tmpfs", f"{path}:{options}" if options else path]
    for key, flag in (("Sysctls", "--sysctl"), ("StorageOpt", "--storage-opt")):
        for name, value in _host_map(container, key).items():
            args += [flag, f"{name}={value if isinstance(value, str) else ''}"]
    for device in _host_list(container, "Devices"):
        parts = [_str_at(device, k) for k in ("PathOnHost", "PathInContainer", "CgroupPermissions")]
        args += ["--device", ":".join(parts)]
    for limit in _host_list(container, "Ulimits"):
        soft, hard = (_at(limit, k) for k in ("Soft", "Hard"))
        soft, hard = (v if isinstance(v, int) and not isinstance(v, bool) else 0 for v in (soft, hard))
        args += ["--ulimit", f"{_str_at(limit, 'Name')}={soft}:{hard}"]
    _config_flags(container, image, args)
    for key, flag in _HOST_SWITCHES:
        if _at(container, "HostConfig", key) is True:
            args.append(flag)
    args += _healthcheck(container, image)


def _own_keys(container, image, key):
    own, inherited = _at(container, "Config", key), _at(image, "Config", key)
    inherited = inherited if isinstance(inherited, dict) else {}
    return [k for k in (own if isinstance(own, dict) else {}) if k not in inherited]


def _own_healthcheck(container, image):
    own = _at(container, "Config", "Healthcheck")
    return own if own is not None and own != _at(image, "Config", "Healthcheck") else None


def _go_duration(nanos):
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if nanos % size == 0:
            return f"{nanos // size}{unit}"
    return f"{nanos}ns"


def _healthcheck(container, image):
    own = _own_healthcheck(container, image)
    if not isinstance(own, dict):
        return []
    test = [t for t in (own.get("Test") or []) if isinstance(t, str)]
    if test[:1] == ["NONE"]:
        return ["--no-healthcheck"]
    args = ["--health-cmd", test[1]] if len(test) == 2 and test[0] == "CMD-SHELL" else []
    for key, flag in (("Interval", "--health-interval"), ("Timeout", "--health-timeout"),
                      ("StartPeriod", "--health-start-period"), ("StartInterval", "--health-start-interval")):
        value = own.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            args += [flag, _go_duration(value)]
    retries = own.get("Retries")
    if isinstance(retries, int) and not isinstance(retries, bool) and retries > 0:
        args += ["--health-retries", str(retries)]
    return args


def _config_flags(container, image, args):
    for key, flag in (("User", "--user"), ("StopSignal", "--stop-signal")):
        own = _str_at(container, "Config", key)
        if own and own != _str_at(image, "Config", key):
            args += [flag, own]
    network = _str_at(container, "HostConfig", "NetworkMode")
    own_network = not (network == "host" or network.startswith("container:"))
    hostname = _str_at(container, "Config", "Hostname")
    if own_network and hostname and _str_at(container, "Id")[:12] != hostname:
        args += ["--hostname", hostname]
    timeout = _at(container, "Config", "StopTimeout")
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        args += ["--stop-timeout", str(timeout)]
    for port in _own_keys(container, image, "ExposedPorts"):
        args += ["--expose", port]


# src/template/networks.rs: the own network's aliases and fixed address, and the other
# networks the container was connected to.
def _primary_network(container):
    mode = _str_at(container, "HostConfig", "NetworkMode")
    return "bridge" if mode in ("", "default") else mode


def _networks(container):
    networks = _at(container, "NetworkSettings", "Networks")
    return list(networks.items()) if isinstance(networks, dict) else []


def _own_aliases(container, endpoint):
    short_id, name = _str_at(container, "Id")[:12], _str_at(container, "Name").lstrip("/")
    aliases = _at(endpoint, "Aliases")
    return [a for a in (aliases if isinstance(aliases, list) else [])
            if isinstance(a, str) and a not in (short_id, name)]


def _addresses(endpoint, args):
    for key, flag in (("IPv4Address", "--ip"), ("IPv6Address", "--ip6")):
        address = _str_at(endpoint, "IPAMConfig", key)
        if address:
            args += [flag, address]


def _network_run_flags(container, args):
    for name, endpoint in _networks(container):
        if name == _primary_network(container):
            for alias in _own_aliases(container, endpoint):
                args += ["--network-alias", alias]
            _addresses(endpoint, args)


def docker_network_connects(container):
    connects = []
    for name, endpoint in _networks(container):
        if name != _primary_network(container):
            args = []
            for alias in _own_aliases(container, endpoint):
                args += ["--alias", alias]
            _addresses(endpoint, args)
            connects.append(args + [name])
    return connects


def docker_not_carried(container, image):
    mounts = _host_list(container, "Mounts")
    lost = [f"--mount {_str_at(m, 'Target')}" for m in mounts]
    if _host_list(container, "Links"):
        lost.append("--link")
    options = [o for o in _host_list(container, "SecurityOpt") if isinstance(o, str)]
    if any(not _carried_list_item("SecurityOpt", o) for o in options):
        lost.append("--security-opt seccomp")
    if _host_list(container, "DeviceRequests"):
        lost.append("--gpus")
    own = _own_healthcheck(container, image)
    if isinstance(own, dict) and (own.get("Test") or [None])[0] == "CMD":
        lost.append("--health-cmd (exec form)")
    return lost


def docker_by_name(containers):
    out = {}
    for c in containers if isinstance(containers, list) else []:
        out[_str_at(c, "Name").lstrip("/")] = c
    return out


def docker_label(containers, key):
    out = {}
    for name, c in (containers.items() if isinstance(containers, dict) else []):
        labels = _at(c, "Config", "Labels")
        if isinstance(labels, dict) and key in labels:
            out[name] = labels[key]
    return out


def docker_published(container, port):
    port = display(port)
    key = port if "/" in port else f"{port}/tcp"
    bindings = _at(container, "HostConfig", "PortBindings", key)
    if not isinstance(bindings, list) or not bindings:
        return None
    host_port = _str_at(bindings[0], "HostPort")
    if not host_port:
        return None
    ip = _str_at(bindings[0], "HostIp")
    if ip in ("", "0.0.0.0", "::"):
        ip = "127.0.0.1"
    return f"{ip}:{host_port}"


def split(value, sep=None, maxsplits=-1):
    """minijinja's `split` filter (Jinja2 has none): Python's str.split."""
    return display(value).split(sep, -1 if maxsplits is None else maxsplits)


FILTERS = {
    "quote": quote,
    "split": split,
    "bool": to_bool,
    "from_json": from_json,
    "docker_by_name": docker_by_name,
    "docker_label": docker_label,
    "docker_run_options": docker_run_options,
    "docker_run_context": docker_run_context,
    "docker_run_command": docker_run_command,
    "docker_published": docker_published,
    "docker_not_carried": docker_not_carried,
    "docker_env_file": docker_env_file,
    "docker_network_connects": docker_network_connects,
}
TESTS = {
    "version": version_test,
    "pinned_version": pinned_version,
    "startingwith": lambda v, other: display(v).startswith(display(other)),
    "endingwith": lambda v, other: display(v).endswith(display(other)),
}


# --- templates (src/template/mod.rs) ----------------------------------------------------


def is_template(s):
    return "{{" in s or "{%" in s


def has_template(value):
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    return False


def single_expression(s):
    s = s.strip()
    if not (s.startswith("{{") and s.endswith("}}")):
        return None
    inner = s[2:-2]
    if "{{" in inner or "}}" in inner or "{%" in inner:
        return None
    return inner


def _ident(c):
    return c.isascii() and (c.isalnum() or c == "_")


def guarded(source, name):
    """Whether every use of `name` is followed (after any `.attribute`s) by a `default`
    filter or a `defined`/`undefined` test (fleetup's check_defined)."""
    uses, at = 0, source.find(name)
    while at >= 0:
        before = source[at - 1] if at else ""
        after = source[at + len(name):]
        at = source.find(name, at + 1)
        if (before and (_ident(before) or before == ".")) or (after[:1] and _ident(after[0])):
            continue
        uses += 1
        rest = re.sub(r"^[A-Za-z0-9_.]*", "", after).lstrip()
        guard = False
        if rest.startswith("|"):
            r = rest[1:].lstrip()
            guard = r.startswith("default") or r.startswith("d(")
        guard = guard or any(rest.startswith(t) for t in ("is defined", "is not defined", "is undefined"))
        if not guard:
            return False
    return uses > 0


class TemplateError(Exception):
    pass


class Templates:
    """The template engine with fleetup's filters and tests; compiled templates cached."""

    def __init__(self):
        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            finalize=display,
        )
        env.filters.update(FILTERS)
        env.tests.update(TESTS)
        self.env = env
        self._templates = {}
        self._expressions = {}

    def _template(self, source):
        got = self._templates.get(source)
        if got is None:
            ast = self.env.parse(source)
            got = (self.env.from_string(ast), frozenset(jinja2.meta.find_undeclared_variables(ast)))
            self._templates[source] = got
        return got

    def _expression(self, expression):
        got = self._expressions.get(expression)
        if got is None:
            ast = self.env.parse("{{ " + expression + " }}")
            used = frozenset(jinja2.meta.find_undeclared_variables(ast))
            got = (self.env.compile_expression(expression, undefined_to_none=False), used)
            self._expressions[expression] = got
        return got

    def variables_in(self, value):
        if isinstance(value, str):
            return set(self._template(value)[1]) if is_template(value) else set()
        if isinstance(value, list):
            return set().union(*(self.variables_in(v) for v in value)) if value else set()
        if isinstance(value, dict):
            return set().union(*(self.variables_in(v) for v in value.values())) if value else set()
        return set()

    def render(self, source, scope):
        template, used = self._template(source)
        return self._run(lambda ctx: template.render(ctx), source, used, scope)

    def eval(self, expression, scope):
        fn, used = self._expression(expression)
        value = self._run(lambda ctx: fn(**ctx), expression, used, scope)
        return bool(value) and not isinstance(value, jinja2.Undefined)

    def value(self, expression, scope):
        fn, used = self._expression(expression)
        value = self._run(lambda ctx: fn(**ctx), expression, used, scope)
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return value

    def _run(self, call, source, used, scope):
        missing = sorted(
            n for n in used
            if not scope.has(n) and n not in ("range", "dict", "namespace", "lookup") and not guarded(source, n)
        )
        if missing:
            raise TemplateError(f"undefined variable `{missing[0]}` in {source[:60]!r}")
        ctx = {n: scope.get(n) for n in used if scope.has(n)}
        try:
            return call(ctx)
        except jinja2.TemplateError as e:
            raise TemplateError(f"{e} in {source[:60]!r}") from e

    def render_value(self, value, scope):
        """A variable's value, its templates rendered (one expression keeps its type)."""
        if isinstance(value, str) and is_template(value):
            expression = single_expression(value)
            if expression is not None:
                return self.value(expression, scope)
            return self.render(value, scope)
        if isinstance(value, list):
            return [self.render_value(v, scope) for v in value]
        if isinstance(value, dict):
            return {k: self.render_value(v, scope) for k, v in value.items()}
        return value


class Scope:
    """A host's variables: raw values (templates or not), plus the step's own `vars`.
    A template variable is rendered the first time it is read and kept while nothing it
    reads (transitively) changes: a register drops what depends on it. Registered
    results are data, never templates (walking them for braces was most of the cost)."""

    def __init__(self, raw, templates, shared=None, local=None):
        self.raw = raw
        self.templates = templates
        # memo, dependencies and registered names: one host's, shared by its step scopes
        self.shared = shared or ({}, {}, set())
        self.memo, self._deps, self.data = self.shared
        self.local = local or {}

    def has(self, name):
        return name in self.local or name in self.raw

    def _value(self, name):
        return self.local[name] if name in self.local else self.raw[name]

    def _reads(self, name):
        if name in self.data or name not in self.raw:
            return set()
        return self.templates.variables_in(self.raw[name])

    def deps(self, name):
        """The variables `name`'s raw value reads, transitively."""
        got = self._deps.get(name)
        if got is None:
            got, pending = set(), list(self._reads(name))
            while pending:
                n = pending.pop()
                if n not in got:
                    got.add(n)
                    pending.extend(self._reads(n))
            self._deps[name] = got
        return got

    def get(self, name):
        value = self._value(name)
        if name in self.data or not has_template(value):
            return value
        if name in self.local:
            return self.templates.render_value(value, self)
        deps = self.deps(name)
        if name in deps:
            raise TemplateError(f"variable `{name}` refers to itself")
        if any(d in self.local for d in deps):
            return self.templates.render_value(value, self)
        if name not in self.memo:
            self.memo[name] = self.templates.render_value(value, self)
        return self.memo[name]

    def with_vars(self, local):
        return Scope(self.raw, self.templates, self.shared, local)

    def register(self, name, result):
        self.raw[name] = result
        self.data.add(name)
        for n in [n for n in self.memo if name in self.deps(n)]:
            del self.memo[n]


def registered(stdout, stderr, rc):
    """What `register` records (src/engine/verdict.rs): output without final newlines."""
    out, err = stdout.rstrip("\r\n"), stderr.rstrip("\r\n")
    return {
        "stdout": out, "stderr": err, "rc": rc,
        "stdout_lines": out.splitlines(), "stderr_lines": err.splitlines(),
        "changed": False, "failed": rc != 0, "skipped": False, "attempts": 1,
    }
