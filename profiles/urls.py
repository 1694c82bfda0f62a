from django.urls import path

from . import views

urlpatterns = [
    path("flamegraph/<str:token>/", views.shared_flamegraph, name="flamegraph-shared"),
]
