"""The device twin: site parameters from the fleet back end, and what the site reports back.

Desired properties: `{"parameters": {tag: value, ...}}`. A parameter is a tag the site lets be
changed at run time and keeps across restarts (access "rw" and retained: limits, SOC bounds,
ramps, the mode, grid-service capacities, the trim's gains); an enum takes its value or its
label. A patch is checked whole with the tags' own checks (type and range: the io_map's), and
then applied whole, as one durable write at one scan boundary (recorded in the event log by
"cloud twin v<version>", kept by the retain store, so a site that starts offline runs on the
last accepted parameters), or, if anything in it is wrong, not at all: the reported
`parameters` then names every error and the version refused.

Reported properties: the software version, state, mode, active errors, the grid-service
capacities, the parameters accepted (`parameters.version`) and the link's statistics.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from plc.tags import Access, DType, TagValueError
from runtime import __version__
from runtime.image import ProcessImage, StorageError, Tag

APPLY_TIMEOUT_S = 5.0
REPORTED_TAGS = ("site_state", "mode_active", "mode", "error_active_count", "error_highest_severity",
                 "fcr_n_capacity_w", "fcr_d_up_capacity_w", "fcr_d_down_capacity_w", "ffr_capacity_w", "soc_pct")


def parameters(image: ProcessImage) -> dict[str, Tag]:
    """The site's parameters: the writable tags it retains."""
    return {tag.name: tag for tag in image if tag.spec.access is Access.RW and tag.spec.retain}


class Twin:
    """Applies desired parameters to one site's image and says what to report (any thread)."""

    def __init__(self, image: ProcessImage, timeout_s: float = APPLY_TIMEOUT_S):
        self.image = image
        self.timeout_s = timeout_s
        self.accepted_version: int | None = None

    def desired(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Apply the `parameters` of a desired document or patch; the reported patch that says
        what came of it (empty when it holds no parameters)."""
        if "parameters" not in desired:
            return {}
        version = desired.get("$version")
        wanted = desired["parameters"]
        if not isinstance(wanted, dict):
            return self._refused(version, [f"parameters: an object of tag names and values, not "
                                           f"{type(wanted).__name__}"])
        items, errors = self._checked(wanted)
        if errors:
            return self._refused(version, errors)
        changed = [(name, value) for name, value in items if self._current(name) != value]
        if changed:
            request = self.image.request_writes(changed, source=f"cloud twin v{version}", durable=True)
            try:
                request.done.result(self.timeout_s)
            except StorageError as exc:
                return self._refused(version, [f"not stored, not applied: {exc}"])
            except FutureTimeout:
                return self._refused(version, [f"not applied within {self.timeout_s:g} s (is the scan running?)"])
        self.accepted_version = version if isinstance(version, int) else self.accepted_version
        return {"parameters": {"version": self.accepted_version, "errors": [], "changed": [n for n, _ in changed]}}

    def _checked(self, wanted: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[str]]:
        """Every (tag, value) of `wanted` checked; the errors of all that are wrong."""
        known = parameters(self.image)
        items, errors = [], []
        for name, value in wanted.items():
            tag = known.get(name)
            if tag is None:
                errors.append(f"parameters.{name}: not a parameter of this site"
                              f"{' (it is read-only or not retained)' if name in self.image else ''}")
                continue
            if value is None:
                continue  # a merge patch's delete: the site keeps its value
            try:
                items.append((name, tag.check(_from_label(tag, value))))
            except (TagValueError, ValueError, TypeError) as exc:
                errors.append(f"parameters.{name}: {exc}")
        return items, errors

    def _current(self, name: str) -> Any:
        snapshot = self.image.snapshot
        return None if snapshot is None else snapshot.value(name)

    def _refused(self, version: Any, errors: list[str]) -> dict[str, Any]:
        return {"parameters": {"version": self.accepted_version, "refused_version": version, "errors": errors}}

    def reported(self, link: dict[str, Any]) -> dict[str, Any]:
        """The reported properties: software, the site's state and capacities, the link."""
        snapshot = self.image.snapshot
        site: dict[str, Any] = {}
        if snapshot is not None:
            for name in REPORTED_TAGS:
                if name in snapshot.index:
                    spec = self.image[name].spec
                    value = snapshot.value(name)
                    site[name] = spec.label(value) if spec.enum_labels else value
        return {"firmware_version": __version__, "site": site, "link": link,
                "parameters": {"version": self.accepted_version}}


def _from_label(tag: Tag, value: Any) -> Any:
    """An enum's label ("self_consumption") as its value; anything else as it is."""
    if tag.spec.dtype is DType.ENUM and isinstance(value, str):
        try:
            return tag.spec.enum_labels.index(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {', '.join(tag.spec.enum_labels)}") from None
    return value
