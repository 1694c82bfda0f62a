from django.urls import path

from . import views
from .pages import ranges

urlpatterns = [
    path("", views.profile_list, name="profile-list"),
    path("profiles/start", views.profile_start, name="profile-start-page"),
    path("profiles/<uuid:pk>/", views.profile_detail, name="profile-page"),
    path("profiles/<uuid:pk>/status", views.profile_status, name="profile-status"),
    path("profiles/<uuid:pk>/download/<str:fmt>", views.profile_download, name="profile-download"),
    path("compare/", views.compare, name="compare"),
    path("history/<str:tenant>/<str:service>/", views.history, name="history"),
    path("alerts/", views.alerts, name="alerts"),
    path("continuous/", views.continuous, name="continuous"),
    path("services/", views.services_inventory, name="services"),
    path("services/<str:service>/", ranges.service_page, name="service-page"),
    path("flamegraph/<str:token>/", views.shared_flamegraph, name="flamegraph-shared"),
]
