"""/teaching/recipients: the register of third parties the Board may share with.

Personnel keep it (recipient.manage in policies/access/actions.toml). A recipient's DICOM
node is registered with the access room as send-only: it may never call the archive.
Decode, call archive.governance.sharing.usecases, encode.
"""

from __future__ import annotations

from archive.governance.sharing import usecases as uc
from archive.governance.sharing.delivery import recipient_node_name
from archive.governance.sharing.recipients import DicomNode, Recipients
from plugins import governance_http as gh
from plugins.rest import HttpError


def _node(body: dict) -> DicomNode | None:
    node = body.get("dicom_node")
    if node is None:
        return None
    if not isinstance(node, dict):
        raise HttpError(400, '"dicom_node" is {"aet": ..., "host": ..., "port": ...}.')
    return DicomNode(node.get("aet"), node.get("host"), node.get("port"))


def _add(services, request, groups):
    principal, body = gh.who(services, request), gh.body(request)
    made = gh.encode(uc.add_recipient(
        gh.ports(services), principal, organisation=body.get("organisation", ""),
        kind=body.get("kind", ""), contact=body.get("contact", ""), dicom_node=_node(body),
        public_key=body.get("public_key"),
        data_sharing_agreement=bool(body.get("data_sharing_agreement", False)),
    ))  # fmt: skip
    node = made.dicom_node
    if node is not None:  # send-only: it may never call the archive's DICOM front
        services.access_store().add_dicom_node(
            recipient_node_name(made.id), node.aet, node.host, node.port
        )
    return made.to_dict()


def _recipients(services) -> Recipients:
    return Recipients(services.db(), gh.governance_policy(services))


def _list(services, request, groups):
    gh.who(services, request)
    return {"recipients": [r.to_dict() for r in _recipients(services).list(include_inactive=True)]}


def _show(services, request, groups):
    gh.who(services, request)
    return _recipients(services).get(gh.number(groups)).to_dict()


def _agreement(services, request, groups):
    body = gh.body(request)
    return gh.encode(uc.set_agreement(
        gh.ports(services), gh.who(services, request), gh.number(groups), body.get("on_file"),
    )).to_dict()  # fmt: skip


def _deactivate(services, request, groups):
    return gh.encode(uc.deactivate_recipient(
        gh.ports(services), gh.who(services, request), gh.number(groups),
    )).to_dict()  # fmt: skip


def register(orthanc, services) -> None:
    gh.governance_policy(services)  # a broken governance policy stops Orthanc: fail closed
    gh.routes(orthanc, services, {
        "/teaching/recipients": {"GET": _list, "POST": _add},
        "/teaching/recipients/([0-9]+)": {"GET": _show},
        "/teaching/recipients/([0-9]+)/agreement": {"POST": _agreement},
        "/teaching/recipients/([0-9]+)/deactivate": {"POST": _deactivate},
    })  # fmt: skip
