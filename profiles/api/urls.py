from django.urls import path

from . import agent, alerts, ranges, views

urlpatterns = [
    path("start", views.ProfileStartView.as_view(), name="profile-start"),
    path("history", views.ProfileHistoryView.as_view(), name="profile-history"),
    path("merge", ranges.MergeView.as_view(), name="profile-merge"),
    path("compare", views.ProfileCompareView.as_view(), name="profile-compare"),
    path("continuous", views.ContinuousListView.as_view(), name="continuous-list"),
    path("continuous/<str:service>", views.ContinuousDetailView.as_view(), name="continuous-detail"),
    path("services", views.ServiceInventoryView.as_view(), name="service-inventory"),
    path("alerts", alerts.AlertListView.as_view(), name="alert-list"),
    path("alerts/webhook", alerts.AlertWebhookView.as_view(), name="alert-webhook"),
    path("alerts/deliveries", alerts.WebhookDeliveryListView.as_view(), name="alert-deliveries"),
    path("alerts/policies/<str:service>", alerts.AlertPolicyView.as_view(), name="alert-policy"),
    path("alerts/<str:alert_id>", alerts.AlertDetailView.as_view(), name="alert-detail"),
    path("agent/poll", agent.AgentPollView.as_view(), name="agent-poll"),
    path("agent/runs/<str:profile_id>/progress", agent.AgentProgressView.as_view(), name="agent-progress"),
    path("agent/runs/<str:profile_id>/upload", agent.AgentUploadView.as_view(), name="agent-upload"),
    path("agent/runs/<str:profile_id>/fail", agent.AgentFailView.as_view(), name="agent-fail"),
    path("<str:profile_id>/export", views.ProfileExportView.as_view(), name="profile-export"),
    path("<str:profile_id>", views.ProfileDetailView.as_view(), name="profile-detail"),
]
