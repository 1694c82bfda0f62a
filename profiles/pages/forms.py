"""Forms of the pages. Choices of tenants come from `tenants.scoping`, so a form cannot reach another tenant."""

from django import forms

from tenants.scoping import tenants_for_user

from ..models import ENGINES_BY_TYPE, SERVICE_VALIDATOR, ProfileType, Status

TYPE_CHOICES = [(value, value) for value in ProfileType.values]
ALL_ENGINES = sorted({engine for engines in ENGINES_BY_TYPE.values() for engine in engines})
ENGINE_CHOICES = [("", "default"), *((engine, engine) for engine in ALL_ENGINES)]


class StartProfileForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=None, empty_label=None)
    service = forms.CharField(
        max_length=128,
        validators=[SERVICE_VALIDATOR],
        widget=forms.TextInput(attrs={"placeholder": "ai-service", "list": "known-services", "autocomplete": "off"}),
    )
    profile_type = forms.ChoiceField(label="Type", choices=TYPE_CHOICES, initial=ProfileType.CPU)
    duration_seconds = forms.IntegerField(label="Duration (s)", min_value=1, max_value=3600, initial=10)
    sample_rate = forms.IntegerField(label="Rate (Hz)", min_value=1, max_value=1000, initial=100)
    engine = forms.ChoiceField(required=False, choices=ENGINE_CHOICES, initial="")

    def clean(self):
        data = super().clean()
        engine, profile_type = data.get("engine"), data.get("profile_type")
        if engine and profile_type and engine not in ENGINES_BY_TYPE[profile_type]:
            allowed = ", ".join(ENGINES_BY_TYPE[profile_type])
            self.add_error("engine", f"{engine} cannot collect {profile_type} profiles; use {allowed}.")
        return data

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        tenants = tenants_for_user(user)
        self.fields["tenant"].queryset = tenants
        if len(tenants) == 1:
            self.fields["tenant"].initial = tenants[0]
            self.fields["tenant"].widget = forms.HiddenInput()


class ProfileFilterForm(forms.Form):
    """The list's filters (GET); every field optional, unknown values simply match nothing."""

    tenant = forms.ChoiceField(required=False)
    service = forms.CharField(
        required=False, max_length=128,
        widget=forms.TextInput(attrs={"placeholder": "any service", "list": "known-services"}),
    )
    profile_type = forms.ChoiceField(label="Type", required=False, choices=[("", "any type"), *TYPE_CHOICES])
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *((s, s) for s in Status.values)])

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        tenants = list(tenants_for_user(user).values_list("external_id", flat=True))
        self.fields["tenant"].choices = [("", "all tenants"), *((t, t) for t in tenants)]
        self.show_tenant = len(tenants) > 1
        if not self.show_tenant:
            self.fields["tenant"].widget = forms.HiddenInput()

    def filter(self, queryset):
        if not self.is_valid():
            return queryset.none()
        data = self.cleaned_data
        if data.get("tenant"):
            queryset = queryset.filter(tenant__external_id=data["tenant"])
        if data.get("service"):
            queryset = queryset.filter(service=data["service"].strip())
        if data.get("profile_type"):
            queryset = queryset.filter(profile_type=data["profile_type"])
        if data.get("status"):
            queryset = queryset.filter(status=data["status"])
        return queryset
