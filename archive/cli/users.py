"""`archive users ...`: named accounts, roles, training, expiry, passwords.

Run on the archive home itself, these commands are how the first personnel account is
made (local filesystem access is administration). Every action is audited with the
local operator as actor.

Password reset, disable, enable, role change, expiry and withdrawn training end every
web session of the user (the access store bumps the account's session epoch in the
same transaction; the rows are deleted here too), and re-enabling an account does not
bring an old session back: the user signs in again.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated

import typer

from archive.access import AccessError, PolicyError, open_access_store
from archive.audit import AuditError, AuditEvent, AuditLog, audit_log_for
from archive.cli.common import HomeOption, JsonOption, actor, emit_json, fail, load, stdin_is_tty

PasswordFileOption = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the password from the first line of this file."),
]
PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


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


def audited(log: AuditLog, action: str, subject: str, fn, **detail: str | int | bool):
    """Run `fn()`, then audit success; audit a refusal as failure and exit with its reason."""
    event = {"subject": subject, **detail}
    try:
        result = fn()
    except AccessError as exc:
        try:
            log.append(
                AuditEvent(action, "failure", actor(), source="cli", detail=event | {"ok": False})
            )
        except AuditError:
            pass
        fail(str(exc))
    try:
        log.append(AuditEvent(action, "success", actor(), source="cli", detail=event))
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
                help="A role (repeat for several): personnel, "
                "head_of_school, tpd, trainer, registrar, board_member.",
            ),
        ],
        expires: Annotated[
            str | None, typer.Option("--expires", help="Account end date (YYYY-MM-DD).")
        ] = None,
        password_file: PasswordFileOption = None,
        password_stdin: PasswordStdinOption = False,
        as_json: JsonOption = False,
    ) -> None:
        """Create a named user (the first personnel account is made this way, locally)."""
        until = datetime.combine(parse_day(expires, "--expires"), time(), UTC) if expires else None
        password = read_password(password_file, password_stdin)
        with opened(home) as (store, log):
            user = audited(
                log,
                "users.add",
                name,
                lambda: store.add_user(name, password, role, now(), actor(), until),
                roles=",".join(sorted(role)),
            )
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
    ) -> None:
        """Replace a user's roles."""
        with opened(home) as (store, log):
            audited(
                log,
                "users.roles",
                name,
                lambda: store.set_roles(name, role, now(), actor()),
                roles=",".join(sorted(role)),
            )
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
        as_json: JsonOption = False,
    ) -> None:
        """Record familiarisation and suite-use training (expiry from the access policy)."""
        day = parse_day(on, "--date") if on else now().date()
        with opened(home) as (store, log):
            record = audited(
                log,
                "users.train",
                name,
                lambda: store.record_training(
                    name, day, now(), actor(), familiarisation, suite_use
                ),
                trained_on=day.isoformat(),
                familiarisation=familiarisation,
                suite_use=suite_use,
            )
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
    ) -> None:
        """Set when an account stops working (registrars rotating out)."""
        when = (
            None
            if clear
            else (datetime.combine(parse_day(on, "--on"), time(), UTC) if on else now())
        )
        with opened(home) as (store, log):
            audited(
                log,
                "users.expire",
                name,
                lambda: store.expire_account(name, when),
                expires=when.isoformat() if when else "never",
            )
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
    ) -> None:
        """Disable an account at once (its tokens stop working too)."""
        with opened(home) as (store, log):
            audited(
                log,
                "users.enable" if enable else "users.disable",
                name,
                lambda: store.disable(name, not enable),
                sessions_ended=True,
            )
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
    ) -> None:
        """Set a new password (also clears a lockout)."""
        password = read_password(password_file, password_stdin)
        with opened(home) as (store, log):
            audited(
                log,
                "users.reset_password",
                name,
                lambda: store.reset_password(name, password, now()),
                sessions_ended=True,
            )
            end_web_sessions(store, name)
        typer.echo(f"{name}: password reset; web sessions ended")

    @sub.command("approve")
    def approve_cmd(
        name: Annotated[str, typer.Argument(help="The applicant's login name.")],
        home: HomeOption,
        approver: Annotated[
            str, typer.Option("--approver", help="Personnel or Head of School user approving.")
        ],
        speciality: Annotated[str, typer.Option("--speciality", help="e.g. cardiology.")],
        note: Annotated[str, typer.Option("--note", help="Reference to the application.")] = "",
    ) -> None:
        """Record an approved application from another speciality (grants other_speciality)."""
        with opened(home) as (store, log):
            audited(
                log,
                "users.approve_application",
                name,
                lambda: store.approve_application(name, approver, speciality, now(), note),
                approver=approver,
            )
            end_web_sessions(store, name)
        typer.echo(f"{name}: application approved by {approver}; role other_speciality granted")
