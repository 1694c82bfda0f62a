from django.urls import path

from . import views

urlpatterns = [
    path("start", views.ProfileStartView.as_view(), name="profile-start"),
    path("history", views.ProfileHistoryView.as_view(), name="profile-history"),
    path("agent/poll", views.AgentPollView.as_view(), name="agent-poll"),
    path("agent/runs/<str:profile_id>/progress", views.AgentProgressView.as_view(), name="agent-progress"),
    path("agent/runs/<str:profile_id>/upload", views.AgentUploadView.as_view(), name="agent-upload"),
    path("agent/runs/<str:profile_id>/fail", views.AgentFailView.as_view(), name="agent-fail"),
    path("<str:profile_id>", views.ProfileDetailView.as_view(), name="profile-detail"),
]
