"""Sign-up: a new user and their organisation, with them as its owner, in one step."""

from __future__ import annotations

from typing import Any

from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse

from apps.orgs.services import org_create

# The username is the email (apps.orgs.services.user_create), and Django's username column holds 150.
EMAIL_MAX_LENGTH = get_user_model()._meta.get_field("username").max_length or 150


class SignupForm(AllauthSignupForm):
    organisation = forms.CharField(
        label="Organisation name",
        max_length=100,
        required=False,  # required unless the person signs up to accept an invitation (clean_organisation)
        help_text="Your team or company. You can invite others to it later.",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )

    field_order = ["email", "organisation", "password1"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The validators' own four-sentence list, said in one line; they still check every rule.
        self.fields["password1"].help_text = "At least 8 characters; not only digits, not a common password."
        self.fields["email"].widget.attrs.pop("placeholder", None)
        self.fields["password1"].widget.attrs.pop("placeholder", None)

    def clean_email(self) -> str:
        email: str = super().clean_email()
        if len(email) > EMAIL_MAX_LENGTH:
            raise forms.ValidationError(f"Use an address of at most {EMAIL_MAX_LENGTH} characters.")
        return email

    @property
    def joins_by_invitation(self) -> bool:
        """Signing up on the way to accepting an invitation: the new user joins that org instead."""
        next_url = self.data.get("next") or self.initial.get("next") or ""
        return str(next_url).startswith(reverse("console:invitation-accept"))

    def clean_organisation(self) -> str:
        name: str = self.cleaned_data["organisation"].strip()
        if not name and not self.joins_by_invitation:
            raise forms.ValidationError("Give your organisation a name.")
        return name

    @transaction.atomic
    def save(self, request: HttpRequest) -> Any:
        user = super().save(request)
        # allauth returns None when it hides that the address is taken (and emails its owner instead).
        if user is not None and self.cleaned_data["organisation"]:
            org_create(name=self.cleaned_data["organisation"], owner=user)
        return user
