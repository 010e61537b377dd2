"""`archive users ...`: named accounts, roles, training, expiry, passwords.

Password reset, disable, enable, role change, expiry and withdrawn training end every
web session of the user (the access store bumps the account's session epoch in the
same transaction; the rows are deleted here too), and re-enabling an account does not
bring an old session back: the user signs in again.

User administration is a person's act (issue 21): once the archive has an account
that may administer users (user.manage in policies/access/actions.toml), every change
(add, roles, train, expire, disable, reset-password, approve) is made by a person
authenticated with their own password or token (--admin NAME with a prompt or
--admin-password-file, or --admin-token-file; checked by
archive.cli.api.authenticated_person) through the people use cases
(archive.access.usecases), which authorise it and audit it as them. Until then, on a new
home, the local operator makes the first account (bootstrap), audited as the OS user.
Reading (list, show) stays the operator's.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

import typer

from archive.access import AccessError, PolicyError, open_access_store
from archive.access import usecases as people
from archive.audit import AuditError, AuditEvent, AuditLog, audit_log_for
from archive.cli.api import done
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load, stdin_is_tty
from archive.core import Ports, load_action_policy

PasswordFileOption = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the password from the first line of this file."),
]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]
AdminOption = Annotated[
    str | None,
    typer.Option("--admin", envvar="ARCHIVE_ADMIN", help="Your own account (default: $USER)."),
]
AdminPasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--admin-password-file",
        envvar="ARCHIVE_ADMIN_PASSWORD_FILE",
        help="Your own password, first line (or a prompt on a terminal).",
    ),
]
AdminTokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--admin-token-file", envvar="ARCHIVE_ADMIN_TOKEN_FILE", help="Your own API token."
    ),
]
ADMIN_FLAGS = ("--admin-password-file", "--admin-token-file")


class Acting:
    """Who administers: an authenticated person, or the operator at bootstrap."""

    def __init__(self, user: str, roles: tuple[str, ...], bootstrap: bool,
                 principal=None) -> None:  # fmt: skip
        self.user, self.roles, self.bootstrap = user, roles, bootstrap
        self.principal = principal


def administrator(home: Path, store, log: AuditLog, admin, password_file, token_file) -> Acting:
    """The person doing this, from their own credentials; on a home without any active
    account that may administer users, the operator (bootstrap: the first account)."""
    from archive.cli.api import authenticated_person

    admins = load_action_policy(load(home).policies_dir).holders("user.manage")
    if not any(admins & set(u.roles) and not u.disabled for u in store.list_users()):
        return Acting(actor(), (), True)
    principal = authenticated_person(home, store, admin, password_file, token_file,
                                     record=log.append, flags=ADMIN_FLAGS)  # fmt: skip
    return Acting(principal.user, tuple(principal.roles), False, principal)


def admin_act(home: Path, store, log: AuditLog, by: Acting, use_case, action: str,
              subject: str, fn, **detail):  # fmt: skip
    """The people use case as the authenticated administrator (one line on refusal); at
    bootstrap, the operator's own act `fn()` audited as the OS user."""
    if by.bootstrap:
        return audited(log, action, subject, fn, by, **detail)
    ports = Ports(db=store.conn, audit=log, policies_dir=load(home).policies_dir, source="cli")
    return done(use_case(people.PeopleRoom(ports, store), by.principal))


def now() -> datetime:
    return datetime.now(UTC)


def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} must be a date such as 2025-09-30, not {text!r}.")


@contextmanager
def opened(home: Path):
    """(store, audit log) for the home; one clear error line if either cannot open."""
    config = load(home)
    if not config.home.data_dir.is_dir():
        fail(f"{config.home.data_dir} does not exist; run archive init (and mount the volume).")
    try:
        store = open_access_store(config, config.policies_dir)
        log = audit_log_for(config.home)
    except (PolicyError, AuditError) as exc:
        fail(str(exc))
    try:
        yield store, log
    finally:
        store.conn.close()


def audited(
    log: AuditLog,
    action: str,
    subject: str,
    fn,
    by: Acting | None = None,
    **detail: str | int | bool,
):
    """Run `fn()`, then audit success as `by` (the authenticated administrator, or the
    operator); audit a refusal as failure and exit with its reason."""
    event = {"subject": subject, **detail}
    who, roles = (by.user, by.roles) if by is not None else (actor(), ())
    if by is not None and by.bootstrap:
        event["bootstrap"] = True
    try:
        result = fn()
    except AccessError as exc:
        try:
            log.append(
                AuditEvent(
                    action, "failure", who, roles, source="cli", detail=event | {"ok": False}
                )
            )
        except AuditError:
            pass
        fail(str(exc))
    try:
        log.append(AuditEvent(action, "success", who, roles, source="cli", detail=event))
    except AuditError as exc:
        fail(f"done, but the audit log refused the record: {exc}")
    return result


def end_web_sessions(store, name: str) -> int:
    """Delete the user's web session rows (the epoch bump already ended them)."""
    from archive.web.sessions import SessionStore

    return SessionStore(store.conn).end_all_for(name)


def read_password(password_file: Path | None, password_stdin: bool, confirm: bool = True) -> str:
    """The new password from a file, stdin or a hidden prompt – never from the command line."""
    if password_file is not None and password_stdin:
        fail("use either --password-file or --password-stdin, not both.")
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            fail(f"cannot read {password_file} ({exc.strerror}).")
        return lines[0] if lines else ""
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not stdin_is_tty():
        fail("no terminal to prompt for the password: use --password-file or --password-stdin.")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)


def _user_line(data: dict) -> str:
    flags = []
    if data["disabled"]:
        flags.append("DISABLED")
    if data["account_expired"]:
        flags.append("EXPIRED")
    if data["locked_until"]:
        flags.append("LOCKED")
    training = data["training"]
    trained = (
        f"trained until {training['expires_on']}"
        if data["trained"]
        else ("training expired" if training else "no training")
    )
    roles = ",".join(data["roles"]) or "-"
    return f"{data['name']:<20} {roles:<40} {trained}{' ' + ' '.join(flags) if flags else ''}"


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Named users, roles, training and passwords.", no_args_is_help=True)
    app.add_typer(sub, name="users")

    @sub.command("add")
    def add_cmd(
        name: Annotated[str, typer.Argument(help="Login name, e.g. jsmith.")],
        home: HomeOption,
        role: Annotated[
            list[str],
            typer.Option(
                "--role",
                help="A role (repeat for several), as policies/access/actions.toml names them.",
            ),
        ],
        expires: Annotated[
            str | None, typer.Option("--expires", help="Account end date (YYYY-MM-DD).")
        ] = None,
        password_file: PasswordFileOption = None,
        password_stdin: PasswordStdinOption = False,
        admin: AdminOption = None,
        admin_password_file: AdminPasswordFileOption = None,
        admin_token_file: AdminTokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Create a named user, as an administrator of users (the first account: by the
        operator, locally)."""
        until = datetime.combine(parse_day(expires, "--expires"), time(), UTC) if expires else None
        with opened(home) as (store, log):
            by = administrator(home, store, log, admin, admin_password_file, admin_token_file)
            password = read_password(password_file, password_stdin)
            user = admin_act(
                home, store, log, by,
                lambda room, me: people.add_user(room, me, name, password, role, until),
                "users.add", name,
                lambda: store.add_user(name, password, role, now(), by.user, until),
                roles=",".join(sorted(role)),
            )  # fmt: skip
            data = user.as_dict(now())
        emit_json(data) if as_json else typer.echo(f"added {_user_line(data)}")

    @sub.command("list")
    def list_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """All users with roles, training state and flags."""
        with opened(home) as (store, _):
            rows = [u.as_dict(now()) for u in store.list_users()]
        if as_json:
            emit_json(rows)
        else:
            for row in rows:
                typer.echo(_user_line(row))

    @sub.command("show")
    def show_cmd(
        name: Annotated[str, typer.Argument(help="Login name.")],
        home: HomeOption,
        as_json: JsonOption = False,
    ) -> None:
        """One user's roles, training, applications and account state."""
        with opened(home) as (store, _):
            user = store.get_user(name)
            if user is None:
                fail(f"no user {name!r}; list them with archive users list.")
            data = user.as_dict(now())
        if as_json:
            emit_json(data)
            return
        typer.echo(_user_line(data))
        for key in ("account_expires", "locked_until", "created_at", "created_by"):
            typer.echo(f"  {key}: {data[key]}")
        typer.echo(f"  training: {data['training']}")
        for app_ in data["applications"]:
            typer.echo(f"  application: {app_}")

    @sub.command("roles")
    def roles_cmd(
        name: Annotated[str, typer.Argument(help="Login name.")],
        home: HomeOption,
        role: Annotated[list[str], typer.Option("--role", help="The complete new role set.")],
        admin: AdminOption = None,
        admin_password_file: AdminPasswordFileOption = None,
        admin_token_file: AdminTokenFileOption = None,
    ) -> None:
        """Replace a user's roles (as an administrator of users)."""
        with opened(home) as (store, log):
            by = administrator(home, store, log, admin, admin_password_file, admin_token_file)
            admin_act(
                home, store, log, by, lambda room, me: people.set_roles(room, me, name, role),
                "users.roles", name, lambda: store.set_roles(name, role, now(), by.user),
                roles=",".join(sorted(role)),
            )  # fmt: skip
            end_web_sessions(store, name)
        typer.echo(f"{name}: roles {', '.join(sorted(set(role)))}; web sessions ended")

    @sub.command("train")
    def train_cmd(
        name: Annotated[str, typer.Argument(help="Login name.")],
        home: HomeOption,
        on: Annotated[
            str | None, typer.Option("--date", help="Training date (YYYY-MM-DD); default today.")
        ] = None,
        familiarisation: Annotated[
            bool, typer.Option(help="Familiarisation training done.")
        ] = True,
        suite_use: Annotated[bool, typer.Option(help="Suite-use training done.")] = True,
        admin: AdminOption = None,
        admin_password_file: AdminPasswordFileOption = None,
        admin_token_file: AdminTokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Record familiarisation and suite-use training (as yourself; expiry from
        the access policy)."""
        day = parse_day(on, "--date") if on else now().date()
        with opened(home) as (store, log):
            by = administrator(home, store, log, admin, admin_password_file, admin_token_file)
            record = admin_act(
                home, store, log, by,
                lambda room, me: people.record_training(room, me, name, day, familiarisation,
                                                        suite_use),
                "users.train", name,
                lambda: store.record_training(name, day, now(), by.user, familiarisation,
                                              suite_use),
                trained_on=day.isoformat(), familiarisation=familiarisation,
                suite_use=suite_use,
            )  # fmt: skip
            current = store.get_user(name).training  # the latest record counts
            lapsed = current is None or not current.valid_on(now().date())
            if lapsed:
                end_web_sessions(store, name)
        if as_json:
            emit_json(
                {
                    "user": name,
                    "trained_on": day.isoformat(),
                    "expires_on": record.expires_on.isoformat(),
                }
            )
        else:
            typer.echo(
                f"{name}: training recorded on {day}, valid until {record.expires_on}"
                + ("; not valid today: web sessions ended" if lapsed else "")
            )

    @sub.command("expire")
    def expire_cmd(
        name: Annotated[str, typer.Argument(help="Login name.")],
        home: HomeOption,
        on: Annotated[
            str | None,
            typer.Option("--on", help="Last access ends at the start of this date; default now."),
        ] = None,
        clear: Annotated[bool, typer.Option("--clear", help="Remove the expiry.")] = False,
        admin: AdminOption = None,
        admin_password_file: AdminPasswordFileOption = None,
        admin_token_file: AdminTokenFileOption = None,
    ) -> None:
        """Set when an account stops working (as an administrator; rotations)."""
        when = (
            None
            if clear
            else (datetime.combine(parse_day(on, "--on"), time(), UTC) if on else now())
        )
        with opened(home) as (store, log):
            by = administrator(home, store, log, admin, admin_password_file, admin_token_file)
            admin_act(
                home, store, log, by,
                lambda room, me: people.expire_account(room, me, name, when),
                "users.expire", name, lambda: store.expire_account(name, when),
                expires=when.isoformat() if when else "never",
            )  # fmt: skip
            end_web_sessions(store, name)
        typer.echo(
            f"{name}: account {'never expires' if when is None else 'expires ' + when.isoformat()}"
            "; web sessions ended"
        )

    @sub.command("disable")
    def disable_cmd(
        name: Annotated[str, typer.Argument(help="Login name.")],
        home: HomeOption,
        enable: Annotated[bool, typer.Option("--enable", help="Re-enable instead.")] = False,
        admin: AdminOption = None,
        admin_password_file: AdminPasswordFileOption = None,
        admin_token_file: AdminTokenFileOption = None,
    ) -> None:
        """Disable an account at once (as an administrator; its tokens stop too)."""
        with opened(home) as (store, log):
            by = administrator(home, store, log, admin, admin_password_file, admin_token_file)
            admin_act(
                home, store, log, by,
                lambda room, me: people.disable_account(room, me, name, not enable),
                "users.enable" if enable else "users.disable", name,
                lambda: store.disable(name, not enable), sessions_ended=True,
            )  # fmt: skip
            end_web_sessions(store, name)
        typer.echo(
            f"{name}: {'enabled' if enable else 'disabled'}; web sessions ended"
            + (" (old sessions stay ended: sign in again)" if enable else "")
        )

    @sub.command("reset-password")
    def reset_cmd(
        name: Annotated[str, typer.Argument(help="Login name.")],
        home: HomeOption,
        password_file: PasswordFileOption = None,
        password_stdin: PasswordStdinOption = False,
        admin: AdminOption = None,
        admin_password_file: AdminPasswordFileOption = None,
        admin_token_file: AdminTokenFileOption = None,
    ) -> None:
        """Set a new password (as an administrator; clears a lockout)."""
        with opened(home) as (store, log):
            by = administrator(home, store, log, admin, admin_password_file, admin_token_file)
            password = read_password(password_file, password_stdin)
            admin_act(
                home, store, log, by,
                lambda room, me: people.reset_password(room, me, name, password),
                "users.reset_password", name,
                lambda: store.reset_password(name, password, now()), sessions_ended=True,
            )  # fmt: skip
            end_web_sessions(store, name)
        typer.echo(f"{name}: password reset; web sessions ended")

    @sub.command("approve")
    def approve_cmd(
        name: Annotated[str, typer.Argument(help="The applicant's login name.")],
        home: HomeOption,
        speciality: Annotated[str, typer.Option("--speciality", help="e.g. cardiology.")],
        note: Annotated[str, typer.Option("--note", help="Reference to the application.")] = "",
        approver: Annotated[
            str | None, typer.Option("--approver", hidden=True, help="Removed (issue 21).")
        ] = None,
        admin: AdminOption = None,
        admin_password_file: AdminPasswordFileOption = None,
        admin_token_file: AdminTokenFileOption = None,
    ) -> None:
        """Approve an application from another speciality as yourself (authenticated;
        application.approve in the action policy); grants the other-speciality role."""
        from archive.cli.api import authenticated_person

        if approver:
            fail(
                "--approver is no longer accepted: the approver approves in their own name. "
                "Use --admin NAME with their own password (prompt or --admin-password-file)."
            )
        with opened(home) as (store, log):
            principal = authenticated_person(
                home,
                store,
                admin,
                admin_password_file,
                admin_token_file,
                record=log.append,
                flags=ADMIN_FLAGS,
            )
            by = Acting(principal.user, tuple(principal.roles), False, principal)
            admin_act(
                home, store, log, by,
                lambda room, me: people.approve_application(room, me, name, speciality, note),
                "users.approve_application", name, lambda: None,
            )  # fmt: skip
            end_web_sessions(store, name)
        typer.echo(f"{name}: application approved by {by.user}; other-speciality role granted")
