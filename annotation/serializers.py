from __future__ import annotations

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from rest_framework import serializers

from annotation.assignment import ShownImage
from annotation.models import (
    Assignment,
    Membership,
    Project,
    default_aspects,
    validate_aspects,
    validate_reward_options,
)


class UserCreateSerializer(serializers.ModelSerializer):
    password = serializers.CharField(write_only=True, style={"input_type": "password"})

    class Meta:
        model = User
        fields = ["id", "username", "password", "is_staff"]
        read_only_fields = ["id"]

    def validate_password(self, value: str) -> str:
        try:
            validate_password(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(list(error.messages)) from None
        return value

    def create(self, validated_data: dict) -> User:
        return User.objects.create_user(**validated_data)


class ProjectSerializer(serializers.ModelSerializer):
    aspects = serializers.JSONField(required=False)
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "mode",
            "overlap",
            "aspects",
            "guidelines",
            "lease_minutes",
            "gold_rate",
            "val_fraction",
            "test_fraction",
            "retrain_min_new_judgements",
            "reward_options",
            "active_learning",
            "role",
            "created_at",
        ]
        read_only_fields = ["id", "role", "created_at"]

    def get_role(self, project: Project) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(project.pk)

    def validate_aspects(self, value: object) -> list[dict]:
        try:
            validate_aspects(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict["aspects"]) from None
        return [
            {
                "key": aspect["key"],
                "label": str(aspect.get("label") or aspect["key"].replace("_", " ").title()),
                "description": str(aspect.get("description", "")),
            }
            for aspect in value
        ]

    def validate_reward_options(self, value: object) -> dict:
        try:
            validate_reward_options(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.message_dict["reward_options"]) from None
        return value

    def validate_gold_rate(self, value: float) -> float:
        if not 0 <= value <= 1:
            raise serializers.ValidationError("must be between 0 and 1")
        return value

    def validate_overlap(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError("must be at least 1")
        return value

    def validate(self, attrs: dict) -> dict:
        val = attrs.get("val_fraction", 0.1)
        test = attrs.get("test_fraction", 0.1)
        if val < 0 or test < 0 or val + test > 1:
            raise serializers.ValidationError(
                {"val_fraction": ["val_fraction and test_fraction must be ≥ 0 and sum to ≤ 1"]}
            )
        return attrs

    @transaction.atomic
    def create(self, validated_data: dict) -> Project:
        validated_data.setdefault("aspects", default_aspects())
        project = Project.objects.create(**validated_data)
        creator = self.context["request"].user
        Membership.objects.create(project=project, user=creator, role=Membership.Role.MANAGER)
        return project


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)

    def validate_username(self, value: str) -> User:
        try:
            return User.objects.get(username=value)
        except User.DoesNotExist:
            raise serializers.ValidationError(f"no user named {value!r}") from None


class SkipSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


def lease_payload(assignment: Assignment) -> dict:
    """The contract's lease body; variants in the order this annotator sees them."""
    task = assignment.shown
    return {
        "assignment": {
            "id": assignment.pk,
            "expires_at": assignment.expires_at.isoformat(),
            "task": {
                "id": task.id,
                "instruction": task.instruction,
                "category": task.category,
                "source": _image_payload(task.source),
                "variants": [
                    {"id": variant.id, **_image_payload(variant.image)} for variant in task.variants
                ],
            },
        }
    }


def _image_payload(image: ShownImage) -> dict:
    return {"url": image.url, "width": image.width, "height": image.height}
