from __future__ import annotations

from django.forms.renderers import TemplatesSetting


class ConsoleFormRenderer(TemplatesSetting):
    """``{{ form }}`` and ``{{ field.as_field_group }}`` render the console's markup (templates/console/forms/):
    a label for every input, help and errors right under their field, tied to it with aria-describedby."""

    form_template_name = "console/forms/form.html"
    field_template_name = "console/forms/field.html"
