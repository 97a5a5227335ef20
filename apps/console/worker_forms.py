"""Forms of the operators' worker pages: they parse what was typed; the workers' services check and write."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.orgs.models import Organisation
from apps.orgs.selectors import org_by_slug_for_staff
from apps.workers.models import ModelKind, Worker


class WorkerForm(forms.Form):
    name = forms.CharField(
        label="Name", max_length=100, help_text="Clients see it in the X-Worker-Name header, e.g. gpu-a100-1."
    )
    base_url = forms.CharField(
        label="Base URL", max_length=500, help_text="The OpenAI-compatible server, e.g. http://10.0.0.5:8000."
    )
    models = forms.CharField(
        label="Models",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=f"One a line: the model's name, then optionally its kind ({', '.join(ModelKind.values)}).",
    )
    dedicated_org = forms.CharField(
        label="Dedicated to organisation",
        required=False,
        max_length=50,
        help_text="An organisation's slug: only it is routed here. Empty: shared by everyone.",
    )

    @classmethod
    def for_worker(cls, worker: Worker) -> WorkerForm:
        lines = [f"{model['name']} {model['kind']}" for model in worker.served_models]
        return cls(
            initial={
                "name": worker.name,
                "base_url": worker.base_url,
                "models": "\n".join(lines),
                "dedicated_org": worker.dedicated_org.slug if worker.dedicated_org else "",
            }
        )

    def clean_models(self) -> list[dict[str, str]]:
        """``[{"name", "kind"}]``; the service checks names, kinds and duplicates (errors come back on this field)."""
        models = []
        for line in self.cleaned_data["models"].splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) > 2:
                raise forms.ValidationError(f"{line.strip()!r}: write a model's name, then optionally its kind.")
            models.append({"name": parts[0], "kind": parts[1] if len(parts) == 2 else ""})
        return models

    def clean_dedicated_org(self) -> Organisation | None:
        slug = self.cleaned_data["dedicated_org"].strip()
        if not slug:
            return None
        org = org_by_slug_for_staff(slug=slug)
        if org is None:
            raise forms.ValidationError(f"No organisation with slug {slug}.")
        return org

    def service_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "base_url": data["base_url"],
            "models": data["models"],
            "dedicated_org": data["dedicated_org"],
        }
